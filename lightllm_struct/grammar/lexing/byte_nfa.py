"""Byte-level NFAs: nodes with byte-range edges and epsilon edges, built by ``regex_nfa.py``.

Counted repeats give many identical fragments: ``copy_of`` appends a shifted copy of one, and a
*virtual* NFA (for lazily built DFAs) only reserves the optional copies of a big repeat and makes each
node's edges on first use, so ``U{0,2000}`` costs what a generation reaches of it.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from functools import lru_cache

from lightllm_struct.grammar.deadline import Deadline
from lightllm_struct.grammar.errors import GrammarTooComplex
from lightllm_struct.grammar.lexing.utf8 import utf8_sequences


@dataclass(frozen=True)
class RepeatCopies:
    """Where the optional copies of a counted repeat ``U{lo,hi}`` lie: ``copies`` adjacent blocks of
    ``size`` nodes from node ``first``; copy ``j`` links to copy ``j + 1`` and to the repeat's end."""

    first: int
    size: int
    copies: int

    @property
    def stop(self) -> int:
        return self.first + self.size * self.copies


# Repeats with at least this many optional copies are recorded (lazy DFAs share work across them).
RECORD_MIN_COPIES = 16


class ByteNFA:
    """Nodes with byte-range edges ``(lo, hi, target)`` and epsilon edges.

    With ``virtual``, the optional copies of a big counted repeat after the first are only reserved:
    their edges are the first copy's, shifted, and are made on first use (``edges_of``/``eps_of``), so
    a lazy DFA over ``U{0,2000}`` pays for the copies it reaches, not for 2000.
    """

    def __init__(self, max_nodes: int, deadline: Deadline, *, virtual: bool = False) -> None:
        self.edges: list = []
        self.eps: list = []
        self.virtual = virtual
        self._blocks: list[RepeatCopies] = []  # virtual copy ranges, by first node
        self.repeats: list[RepeatCopies] = []
        # Only an empty character set can leave a node unable to reach the final node (Thompson
        # fragments and minimal unit DFAs have no dead parts); lazy DFAs prune only when it was built.
        self.has_empty_set = False
        self._max_nodes = max_nodes
        self._deadline = deadline

    def node(self) -> int:
        if len(self.edges) >= self._max_nodes:
            raise GrammarTooComplex(f"regex automaton exceeds {self._max_nodes} nodes")
        if len(self.edges) % 256 == 0:
            self._deadline.check()
        self.edges.append([])
        self.eps.append([])
        return len(self.edges) - 1

    def edges_of(self, node: int) -> list:
        got = self.edges[node]
        if got is None:  # a reserved copy: the first copy's edges (all inside it), shifted
            shift = self._virtual(node)[1]
            got = self.edges[node] = [(lo, hi, t + shift) for lo, hi, t in self.edges[node - shift]]
        return got

    def eps_of(self, node: int) -> list:
        got = self.eps[node]
        if got is None:  # the first copy's links, shifted; the repeat's end stays, none past the last copy
            block, shift = self._virtual(node)
            out = []
            for t in self.eps[node - shift]:
                if block.first <= t < block.first + 2 * block.size:
                    t += shift
                    if t >= block.stop:
                        continue
                out.append(t)
            got = self.eps[node] = out
        return got

    def materialize(self, lo: int, hi: int) -> None:
        """Make the virtual nodes among ``lo..hi-1`` real (before their edges are copied or scanned)."""
        if self._blocks:
            for node in range(lo, hi):
                self.edges_of(node)
                self.eps_of(node)

    def reserve_copies(self, first: int, size: int, copies: int) -> None:
        """Reserve copies ``1..copies-1`` of the block ``first..first+size-1`` (already linked to copy 1)."""
        if len(self.edges) + size * (copies - 1) > self._max_nodes:
            raise GrammarTooComplex(f"regex automaton exceeds {self._max_nodes} nodes")
        self._blocks.append(RepeatCopies(first, size, copies))
        self.edges.extend([None] * (size * (copies - 1)))
        self.eps.extend([None] * (size * (copies - 1)))

    def has_virtual(self, lo: int, hi: int) -> bool:
        return any(b.first + b.size < hi and lo < b.stop for b in self._blocks)

    def _virtual(self, node: int) -> tuple[RepeatCopies, int]:
        block = self._blocks[bisect.bisect_right([b.first for b in self._blocks], node) - 1]
        return block, (node - block.first) // block.size * block.size

    def copy_of(self, base: int, edges: list, eps: list) -> int:
        """Append a copy of a fragment whose nodes were ``base, base+1, ...``; returns the offset.

        Counted repeats need many identical fragments: shifting one copy's edges is far cheaper than
        walking the regex tree again, and gives exactly the nodes the walk would give.
        """
        off = len(self.edges) - base
        if len(self.edges) + len(edges) > self._max_nodes:
            raise GrammarTooComplex(f"regex automaton exceeds {self._max_nodes} nodes")
        self._deadline.check()
        self.edges.extend([[(lo, hi, t + off) for lo, hi, t in out] for out in edges])
        self.eps.extend([[t + off for t in out] for out in eps])
        return off

    def char_set(self, ranges: list[tuple[int, int]]) -> tuple[int, int]:
        start, end = self.node(), self.node()
        if not ranges:
            self.has_empty_set = True
        chain: dict[tuple, int] = {}
        for seq in _sequences(tuple(ranges)):
            src = start
            for k, (b_lo, b_hi) in enumerate(seq):
                if k == len(seq) - 1:
                    self.edges[src].append((b_lo, b_hi, end))
                    continue
                key = (src, b_lo, b_hi)  # share the trie of lead bytes within one set
                if key not in chain:
                    chain[key] = self.node()
                    self.edges[src].append((b_lo, b_hi, chain[key]))
                src = chain[key]
        return start, end


@lru_cache(maxsize=4096)
def _sequences(ranges: tuple) -> list:
    return [seq for lo, hi in ranges for seq in utf8_sequences(lo, hi)]
