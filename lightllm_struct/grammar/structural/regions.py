"""Which tagged region of a grammar each output byte belongs to, from the grammar's own position.

:class:`RegionTracker` walks a :class:`CompiledGrammar` over the output exactly as the matcher does (same
product lexers, same longest match, same LR stack), one byte at a time, and reports the output as
:class:`Piece` s of regions. A terminal's region is known from the terminal itself; the bytes of the
terminal still being lexed are reported as soon as every terminal the lexer may still end on agrees on
their region, minus a held-back tail that might turn out to be the terminal's closing marker. So pieces
only ever grow a region, never revise one: a stream of them concatenates to the finished message.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from lightllm_struct.grammar.compiled import CompiledGrammar
from lightllm_struct.grammar.errors import GrammarError

KINDS = ("content", "reasoning", "call", "args", "marker")
_STREAMED = ("content", "reasoning", "args")


class RegionError(GrammarError):
    """The output left the grammar it is tracked in (it was not produced under that grammar)."""

    http_status = 500
    error_type = "internal_error"


@dataclass(frozen=True)
class Region:
    """A kind of output region: "content", "reasoning", "call" (the start of call ``call``), "args" or "marker"."""

    kind: str
    call: int = -1

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"region kind must be one of {KINDS}, not {self.kind!r}")


@dataclass(frozen=True)
class Piece:
    """Output bytes of one region (a "call" piece has none: it opens call ``region.call``)."""

    region: Region
    data: bytes


class RegionTracker:
    """Feed output bytes; get the pieces they complete.

    Parameters
    ----------
    grammar:
        The grammar the output was generated under.
    regions:
        Region of each structural terminal, by name; every other terminal is "args".
    strips:
        The closing marker a terminal ends with, by name (not part of its region's bytes).
    """

    def __init__(self, grammar: CompiledGrammar, regions: Mapping[str, Region],
                 strips: Mapping[str, str] | None = None) -> None:
        names = [t.name for t in grammar.lr.terminals]
        self.grammar = grammar
        self._region = [regions.get(n, Region("args")) for n in names]
        self._strip = [(strips or {}).get(n, "").encode() for n in names]
        self._config = grammar.initial_config()
        self._open = bytearray()  # bytes of the terminal being lexed
        self._sent = 0  # how many of them were already reported

    def feed(self, data: bytes) -> list[Piece]:
        """Advance by ``data``; the pieces it made certain.

        Raises
        ------
        RegionError
            ``data`` does not continue the output in the grammar.
        """
        out: list[Piece] = []
        stack, lexer, q = self._config
        for b in data:
            nq = lexer.rows[q][b]
            if nq < 0:
                term = lexer.accept_list[q]
                stack = None if term < 0 else self.grammar.end_terminal(stack, term)
                if stack is None:
                    raise RegionError(f"byte {b:#04x} after {bytes(self._open)[-20:]!r} leaves the grammar")
                self._close(term, out)
                lexer = self.grammar.lexer_for(stack)
                nq = lexer.rows[0][b]
                if nq < 0:
                    raise RegionError(f"byte {b:#04x} cannot start a terminal here")
            q = nq
            self._open.append(b)
        self._config = (stack, lexer, q)
        self._provisional(out)
        return out

    def is_complete(self) -> bool:
        """Whether the output so far is a whole sentence of the grammar."""
        return self.grammar.is_complete(self._config)

    def finish(self) -> list[Piece]:
        """The rest, once the output has ended (complete, or cut off by a token limit)."""
        out: list[Piece] = []
        _, lexer, q = self._config
        if not self._open:
            return out
        term = lexer.accept_list[q]
        if term >= 0:
            self._close(term, out)
            return out
        region = self._agreed(lexer.alive_terms[q])
        rest = bytes(self._open[self._sent:])
        self._open.clear()
        self._sent = 0
        out.append(Piece(region if region is not None and region.kind in _STREAMED else Region("content"), rest))
        return out

    # -- internals --------------------------------------------------------------------------------
    def _close(self, term: int, out: list[Piece]) -> None:
        region, strip = self._region[term], self._strip[term]
        end = len(self._open) - len(strip)
        if region.kind == "call":
            out.append(Piece(region, b""))
        elif region.kind in _STREAMED and end > self._sent:
            out.append(Piece(region, bytes(self._open[self._sent:end])))
        self._open.clear()
        self._sent = 0

    def _agreed(self, alive) -> Region | None:
        regions = {self._region[t] for t in alive}
        return regions.pop() if len(regions) == 1 else None

    def _provisional(self, out: list[Piece]) -> None:
        _, lexer, q = self._config
        if q == 0 or not self._open:
            return
        alive = lexer.alive_terms[q]
        region = self._agreed(alive)
        if region is None or region.kind not in _STREAMED:
            return
        hold = max((_marker_overlap(self._open, self._strip[t]) for t in alive), default=0)
        end = len(self._open) - hold
        if end > self._sent:
            out.append(Piece(region, bytes(self._open[self._sent:end])))
            self._sent = end


def _marker_overlap(data: bytearray, marker: bytes) -> int:
    """Length of the longest suffix of ``data`` that is a prefix of ``marker`` (``marker`` itself included)."""
    for n in range(min(len(data), len(marker)), 0, -1):
        if data.endswith(marker[:n]):
            return n
    return 0
