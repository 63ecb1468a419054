"""Request outputs as deltas across the engine-process pipe: a snapshot a step per request, sent compactly.

A ``RequestOutput`` carries everything so far (the prompt ids, every token, the whole text), so pickling one
per request per step grows with the request. The encoder sends a request's prompt fields once, only the new
tail of its growing lists and text, and the small fields as they are; the decoder on the other side rebuilds
the very same snapshots.
"""
from __future__ import annotations

from dataclasses import fields

from lightllm_struct.request import RequestOutput

_ONCE = ("prompt", "prompt_token_ids", "num_prompt_tokens", "prompt_logprobs")  # fixed for a request
_GROWING = ("token_ids", "logprobs")  # lists that only get longer
_SMALL = tuple(f.name for f in fields(RequestOutput)
               if f.name not in (*_ONCE, *_GROWING, "text", "exception", "request_id"))


class DeltaEncoder:
    """The engine side: what each request was last sent."""

    def __init__(self) -> None:
        self._sent: dict[str, tuple[int, int, str]] = {}  # id -> (tokens sent, logprobs sent, text sent)

    def encode(self, out: RequestOutput) -> tuple:
        """A picklable ``(id, once or None, growing tails, text tail or full, small fields)`` of ``out``."""
        rid = out.request_id
        prev = self._sent.get(rid)
        once = None if prev is not None else tuple(getattr(out, name) for name in _ONCE)
        n_tok, n_lp, text = prev or (0, 0, "")
        logprobs = out.logprobs or []
        tails = (out.token_ids[n_tok:], logprobs[n_lp:] if out.logprobs is not None else None)
        # The text only grows in practice (held-back stop-string prefixes are never sent); else send it whole.
        text_part = (True, out.text[len(text):]) if out.text.startswith(text) else (False, out.text)
        if out.finished:
            self._sent.pop(rid, None)
        else:
            self._sent[rid] = (len(out.token_ids), len(logprobs), out.text)
        return rid, once, tails, text_part, tuple(getattr(out, name) for name in _SMALL)


class DeltaDecoder:
    """The server side: the snapshots so far, rebuilt from deltas."""

    def __init__(self) -> None:
        self._state: dict[str, dict] = {}

    def decode(self, delta: tuple) -> RequestOutput:
        rid, once, (tokens, logprobs), (is_tail, text), small = delta
        state = self._state.get(rid)
        if state is None or once is not None:
            state = dict(zip(_ONCE, once or (None, [], 0, None)), token_ids=[], logprobs=None, text="")
        state["token_ids"] = state["token_ids"] + tokens
        state["logprobs"] = None if logprobs is None else (state["logprobs"] or []) + logprobs
        state["text"] = state["text"] + text if is_tail else text
        state.update(zip(_SMALL, small))
        out = RequestOutput(request_id=rid, **state)
        if out.finished:
            self._state.pop(rid, None)
        else:
            self._state[rid] = state
        return out

    def forget(self, request_id: str) -> None:
        self._state.pop(request_id, None)
