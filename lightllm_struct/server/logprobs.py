"""Engine log-probabilities in OpenAI's two shapes: chat's ``content`` entries and completions' columns.

A token's text is its bytes decoded as UTF-8 (a token holding part of a character shows the replacement
character; its ``bytes`` are exact); a special token with no text bytes shows its name.
"""
from __future__ import annotations

import functools
from typing import Any

from lightllm_struct.request import TokenLogprob
from lightllm_struct.server.protocol import ChatLogprobs, ChatTokenLogprob, CompletionLogprobs, TopLogprob


class TokenTexts:
    """Text and bytes of every token id of ``tokenizer`` (the vocabulary is read once, on first use)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    @functools.cached_property
    def _vocab(self) -> list[bytes]:
        from lightllm_struct.grammar.vocab.huggingface import vocab_from_huggingface

        return vocab_from_huggingface(self.tokenizer.backend)[0]

    def bytes_of(self, token_id: int) -> bytes:
        vocab = self._vocab
        return vocab[token_id] if 0 <= token_id < len(vocab) else b""

    def text_of(self, token_id: int) -> str:
        raw = self.bytes_of(token_id)
        if raw:
            return raw.decode("utf-8", errors="replace")
        return self.tokenizer.decode([token_id], skip_special_tokens=False)


def _top(texts: TokenTexts, token_id: int, logprob: float) -> TopLogprob:
    return TopLogprob(token=texts.text_of(token_id), logprob=logprob, bytes=list(texts.bytes_of(token_id)))


def chat_logprobs(texts: TokenTexts, entries: list[TokenLogprob]) -> ChatLogprobs:
    content = [ChatTokenLogprob(**_top(texts, e.token_id, e.logprob).model_dump(),
                                top_logprobs=[_top(texts, t, lp) for t, lp in e.top]) for e in entries]
    return ChatLogprobs(content=content)


def completion_logprobs(texts: TokenTexts, entries: list[TokenLogprob | None], *, prompt_ids: list[int] = (),
                        offset: int = 0) -> CompletionLogprobs:
    """Columns of ``entries``; a None entry (the first prompt token) is the token ``prompt_ids[i]`` with
    null log-probabilities. ``offset`` is the text offset of the first token."""
    tokens, token_logprobs, top_logprobs, text_offset = [], [], [], []
    for i, e in enumerate(entries):
        token = texts.text_of(prompt_ids[i] if e is None else e.token_id)
        text_offset.append(offset)
        offset += len(token)
        tokens.append(token)
        token_logprobs.append(None if e is None else e.logprob)
        top_logprobs.append(None if e is None else {texts.text_of(t): lp for t, lp in e.top})
    return CompletionLogprobs(tokens=tokens, token_logprobs=token_logprobs, top_logprobs=top_logprobs,
                              text_offset=text_offset)
