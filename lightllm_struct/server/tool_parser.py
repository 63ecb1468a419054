"""Turn generated text in the tool-call format into ``content`` and ``tool_calls``, incrementally.

One parser serves streaming and non-streaming alike (the non-streaming answer is the parser fed the whole
text once), so a streamed response always reassembles to exactly the non-streamed one. Arguments are the
raw text the model produced between the call head and the closing ``}</tool_call>``: under the grammar that
is compact JSON that validates against the tool's schema.
"""
from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field

from lightllm_struct.server.tools import CALL_CLOSE, CALL_OPEN

_HEAD = re.compile(r'\{"name":"([A-Za-z0-9_\-]{1,64})","arguments":')
_TAIL = "}" + CALL_CLOSE


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
    arguments: str


@dataclass
class Delta:
    content: str = ""
    calls: list[ToolCallPiece] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.content or self.calls)


def _held_suffix(text: str, marker: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``marker``."""
    for n in range(min(len(text), len(marker) - 1), 0, -1):
        if marker.startswith(text[-n:]):
            return n
    return 0


class ToolCallParser:
    """Feed the full text generated so far; get what is new since the last feed.

    The output is text (``content``) unless it starts with ``<tool_call>``; then it is a sequence of calls.
    Bytes that might still turn out to be the closing ``}</tool_call>`` are held back until they resolve.
    """

    def __init__(self, *, text_only: bool = False) -> None:
        # None until decided, then "text" or "calls"; plain text from the start when no tools are in play.
        self.mode: str | None = "text" if text_only else None
        self.calls: list[ParsedCall] = []
        self.content = ""
        self._pos = 0          # where the current (unfinished) call block starts
        self._args_start = -1  # where its arguments start, once its head is complete
        self._emitted = 0      # characters of its arguments already handed out

    def feed(self, text: str, *, final: bool = False) -> Delta:
        if self.mode is None:
            self._decide(text, final)
        if self.mode == "text":
            new = text[len(self.content):]
            self.content = text
            return Delta(content=new)
        if self.mode == "calls":
            return self._feed_calls(text, final)
        return Delta()

    def _decide(self, text: str, final: bool) -> None:
        if text.startswith(CALL_OPEN):
            self.mode = "calls"
        elif text and (not CALL_OPEN.startswith(text) or final):
            self.mode = "text"
        elif final:
            self.mode = "text"

    def _feed_calls(self, text: str, final: bool) -> Delta:
        delta = Delta()
        while True:
            if self._args_start < 0 and not self._start_call(text, delta):
                break
            end = self._find_tail(text)
            if end >= 0:
                self._emit_args(text[self._args_start:end], delta)
                self.calls[-1].arguments = text[self._args_start:end]
                self._pos, self._args_start, self._emitted = end + len(_TAIL), -1, 0
                continue
            args = text[self._args_start:]
            hold = 0 if final else _held_suffix(args, _TAIL)
            self._emit_args(args[: len(args) - hold], delta)
            self.calls[-1].arguments = args[: len(args) - hold]
            break
        if final and self._args_start < 0 and self._pos < len(text):
            # Trailing text that is not a complete call (cut off by max_tokens): keep it visible.
            delta.content += text[self._pos:]
            self.content += text[self._pos:]
            self._pos = len(text)
        return delta

    def _find_tail(self, text: str) -> int:
        # "}</tool_call>" may also occur inside a JSON string argument: the real end is the first one
        # before which the arguments are complete JSON.
        end = text.find(_TAIL, self._args_start)
        while end >= 0:
            try:
                json.loads(text[self._args_start:end])
                return end
            except json.JSONDecodeError:
                end = text.find(_TAIL, end + 1)
        return -1

    def _start_call(self, text: str, delta: Delta) -> bool:
        if not text.startswith(CALL_OPEN, self._pos):
            return False
        m = _HEAD.match(text, self._pos + len(CALL_OPEN))
        if m is None:
            return False
        call = ParsedCall(id=f"call_{uuid.uuid4().hex[:24]}", name=m.group(1), arguments="")
        self.calls.append(call)
        delta.calls.append(ToolCallPiece(index=len(self.calls) - 1, arguments="", id=call.id, name=call.name))
        self._args_start, self._emitted = m.end(), 0
        return True

    def _emit_args(self, args: str, delta: Delta) -> None:
        new = args[self._emitted:]
        if not new:
            return
        index = len(self.calls) - 1
        if delta.calls and delta.calls[-1].index == index:
            delta.calls[-1].arguments += new
        else:
            delta.calls.append(ToolCallPiece(index=index, arguments=new))
        self._emitted = len(args)


def parse_tool_output(text: str) -> tuple[str | None, list[ParsedCall]]:
    """``(content, calls)`` of a finished output: the non-streaming view of ``ToolCallParser``."""
    parser = ToolCallParser()
    parser.feed(text, final=True)
    return (parser.content or None), parser.calls
