"""From a turn's output tokens to ``content``, ``reasoning_content`` and ``tool_calls``, incrementally.

The split comes from the grammar the output was generated under: a :class:`RegionTracker` walks it over the
tokens' bytes and says which region each byte is in (``grammar/structural/regions.py``); nothing here
re-parses text. One parser serves streaming and non-streaming alike (non-streaming is the parser fed all
tokens at once), so a streamed response reassembles to exactly the non-streamed one.
"""
from __future__ import annotations

import codecs
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from lightllm_struct.grammar.structural import Piece, RegionTracker


def _decoder():
    return codecs.getincrementaldecoder("utf-8")(errors="replace")


@dataclass
class ToolCallPiece:
    """A piece of one call: the first piece of a call carries ``id`` and ``name``."""

    index: int
    arguments: str
    id: str | None = None
    name: str | None = None


@dataclass
class ParsedCall:
    id: str
    name: str
    arguments: str = ""


@dataclass
class Delta:
    content: str = ""
    reasoning: str = ""
    calls: list[ToolCallPiece] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.content or self.reasoning or self.calls)


class TurnParser:
    """Feed the output token ids generated so far; get what is new since the last feed.

    Parameters
    ----------
    tracker:
        The region tracker of the grammar the output is generated under.
    names:
        Tool name of each call index of that grammar.
    token_bytes:
        The bytes of every token id.
    skip:
        Token ids that stand for no text (EOS, special tokens).
    new_id:
        Makes a call id.
    """

    def __init__(self, tracker: RegionTracker, names: Sequence[str], *, token_bytes: Sequence[bytes],
                 skip: frozenset[int], new_id: Callable[[], str]) -> None:
        self._tracker, self._names = tracker, names
        self._bytes, self._skip, self._new_id = token_bytes, skip, new_id
        self._seen = 0
        self._text, self._reasoning = _decoder(), _decoder()
        self._args: list = []
        self.content = ""
        self.reasoning = ""
        self.calls: list[ParsedCall] = []

    def feed(self, token_ids: Sequence[int], *, final: bool = False) -> Delta:
        """The delta of the tokens after those already seen (``token_ids`` is the whole output so far)."""
        data = b"".join(self._bytes[t] for t in token_ids[self._seen:] if t not in self._skip)
        self._seen = len(token_ids)
        pieces = self._tracker.feed(data)
        if final:
            pieces += self._tracker.finish()
        delta = Delta()
        for piece in pieces:
            self._apply(piece, delta)
        if final:
            self._flush(delta)
        return delta

    def _apply(self, piece: Piece, delta: Delta) -> None:
        kind = piece.region.kind
        if kind == "call":
            call = ParsedCall(id=self._new_id(), name=self._names[piece.region.call])
            self.calls.append(call)
            self._args.append(_decoder())
            delta.calls.append(ToolCallPiece(index=len(self.calls) - 1, arguments="", id=call.id, name=call.name))
        elif kind == "args" and self.calls:
            self._add_args(self._args[-1].decode(piece.data), delta)
        elif kind == "reasoning":
            text = self._reasoning.decode(piece.data)
            self.reasoning += text
            delta.reasoning += text
        else:  # content, or a constrained answer's terminals outside any call
            text = self._text.decode(piece.data)
            self.content += text
            delta.content += text

    def _add_args(self, text: str, delta: Delta) -> None:
        if not text:
            return
        index = len(self.calls) - 1
        self.calls[index].arguments += text
        if delta.calls and delta.calls[-1].index == index:
            delta.calls[-1].arguments += text
        else:
            delta.calls.append(ToolCallPiece(index=index, arguments=text))

    def _flush(self, delta: Delta) -> None:
        text = self._text.decode(b"", final=True)
        self.content += text
        delta.content += text
        reasoning = self._reasoning.decode(b"", final=True)
        self.reasoning += reasoning
        delta.reasoning += reasoning
        if self.calls:
            self._add_args(self._args[-1].decode(b"", final=True), delta)
