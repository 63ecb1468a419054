"""Token masks: which vocabulary tokens can come next in a configuration.

Work is split the way xgrammar's adaptive cache splits it, but along our automaton:

* A *scan node* is the vectorized lexer run of a set of tokens from one lexer state. It depends on no
  stack. Tokens whose bytes all stay inside the lexer are allowed (live terminals are exact, so every
  lexer state can still finish); tokens that hit a byte without transition where the state accepts a
  terminal form a *group* ``(terminal, frontier)``; the others are rejected. Root nodes are cached per
  lexer-state signature (shared by every lexer in which the same terminal states are alive), children
  per ``(group, next lexer)``. A root scan that lets most of the vocabulary through is, where possible,
  a delta from an earlier one that no 16-byte string tells apart from it (``scan_share``).
* The stack-dependent part feeds each group's terminal to the parser once per group (not once per
  token) and descends into the child node of the lexer live afterwards.
* The whole mask is cached keyed by the signature plus exactly the top of the stack the computation
  read (``Touch``: depth, and the height where depth-limit checks were involved), so configurations
  that differ only deeper down share their mask.

Three scanners implement the node scans: the token trie walked in compiled code (default, ``scan_jit``),
the same trie walked level by level in numpy (the fallback without numba), and a length-sorted byte matrix.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Protocol, runtime_checkable

import numpy as np

from lightllm_struct.grammar.bitmask import pack_token_ids
from lightllm_struct.grammar.parsing.dpda import Stack, Touch
from lightllm_struct.grammar.lexing.lexer import Lexer, UnionLexer
from lightllm_struct.grammar.masks.scan_jit import AVAILABLE as JIT_AVAILABLE
from lightllm_struct.grammar.masks.scan_jit import PreorderTrie, jit_scan
from lightllm_struct.grammar.masks.scan_matrix import matrix_scan
from lightllm_struct.grammar.masks.scan_share import SharedWideScans
from lightllm_struct.grammar.masks.scan_trie import trie_scan

SCANNERS = ("trie", "trie_numpy", "matrix")


class ScanNode:
    """Allowed tokens and boundary groups of one scan; children are built lazily and shared.

    A group is ``(position, frontier)``: ``position`` indexes the alive terminals of the state the scan
    started from (``UnionLexer.alive_terms``), so a node carries no grammar-specific terminal ids and
    can serve every grammar over the same vocabulary.
    """

    __slots__ = ("words", "groups", "children", "_lock")

    def __init__(self, words: np.ndarray, groups: list[tuple[int, object]]) -> None:
        self.words = words  # packed tokens allowed without leaving the lexer
        self.groups = groups
        self.children: dict[tuple, ScanNode] = {}
        self._lock = threading.Lock()

    def child(self, index: int, lexer: UnionLexer, scanner: Scanner) -> "ScanNode":
        key = (index, lexer.signature[0])
        node = self.children.get(key)
        if node is None:
            node = scanner.resume(lexer, self.groups[index][1])
            with self._lock:
                node = self.children.setdefault(key, node)
        return node


def _positions(groups, lexer: UnionLexer, state: int) -> list[tuple[int, object]]:
    pos_of = {t: i for i, t in enumerate(lexer.alive_terms[state])}
    return [(pos_of[term], frontier) for term, frontier in groups]


@runtime_checkable
class Scanner(Protocol):
    """The contract of the three scanners (``SCANNERS``): a lexer run of the vocabulary, as a scan node.

    ``root`` scans every token from lexer state ``state``; ``resume`` continues the tokens of a group's
    ``frontier`` (where an earlier scan left them) from the start state of the next lexer.
    """

    def root(self, lexer: Lexer, state: int) -> ScanNode: ...

    def resume(self, lexer: Lexer, frontier) -> ScanNode: ...


class TrieScanner:
    """Level-by-level numpy walk of the token trie."""

    def __init__(self, tok) -> None:
        self.trie, self.num_words = tok.trie, tok.num_words

    def root(self, lexer: UnionLexer, state: int) -> ScanNode:
        allowed, groups = trie_scan(self.trie, lexer, self.trie.roots, state)
        return ScanNode(self.trie.flags_to_words(allowed, self.num_words), _positions(groups, lexer, state))

    def resume(self, lexer: UnionLexer, frontier) -> ScanNode:
        allowed, groups = trie_scan(self.trie, lexer, frontier, 0)
        return ScanNode(self.trie.flags_to_words(allowed, self.num_words), _positions(groups, lexer, 0))


class JitTrieScanner:
    """Compiled walks of the preorder token trie (``scan_jit``); wide root scans shared (``scan_share``)."""

    def __init__(self, tok) -> None:
        self.trie = PreorderTrie(tok.trie, tok.num_words)
        self.wide = SharedWideScans(self.trie)

    def root(self, lexer: UnionLexer, state: int) -> ScanNode:
        return ScanNode(*self.wide.root_scan(lexer, state))

    def resume(self, lexer: UnionLexer, frontier) -> ScanNode:
        words, groups = jit_scan(self.trie, lexer, frontier, 0)
        return ScanNode(words, _positions(groups, lexer, 0))


class MatrixScanner:
    def __init__(self, tok) -> None:
        self.matrix, self.num_words = tok.matrix, tok.num_words

    def root(self, lexer: UnionLexer, state: int) -> ScanNode:
        allowed, groups = matrix_scan(self.matrix, lexer, self.matrix.all_rows, 0, state)
        return ScanNode(self.matrix.words(allowed, self.num_words), _positions(groups, lexer, state))

    def resume(self, lexer: UnionLexer, frontier) -> ScanNode:
        col, rows = frontier
        allowed, groups = matrix_scan(self.matrix, lexer, rows, col, 0)
        return ScanNode(self.matrix.words(allowed, self.num_words), _positions(groups, lexer, 0))


class ScanCache:
    """Root scan nodes of one vocabulary, shared by all its grammars (LRU, thread-safe)."""

    def __init__(self, scanner: Scanner, *, capacity: int = 4096) -> None:
        self.scanner = scanner
        self._roots: OrderedDict = OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()

    def root(self, lexer: UnionLexer, state: int) -> ScanNode:
        key = lexer.signature[state]  # read first: a lazy lexer makes the rows the scan reads
        node = self._roots.get(key)
        if node is None:
            node = self.scanner.root(lexer, state)
            with self._lock:
                node = self._roots.setdefault(key, node)
                while len(self._roots) > self._capacity:
                    self._roots.popitem(last=False)
        return node


def scan_cache_for(tok, kind: str) -> ScanCache:
    """The vocabulary's shared scan cache for scanner ``kind`` (one of ``SCANNERS``).

    "trie" is the compiled walk when numba is importable, else the numpy walk.
    """
    if kind == "trie" and not JIT_AVAILABLE:
        kind = "trie_numpy"
    scanner_class = {"trie": JitTrieScanner, "trie_numpy": TrieScanner, "matrix": MatrixScanner}[kind]
    return tok.shared(("scan_cache", kind), lambda: ScanCache(scanner_class(tok)))


class TokenMasker:
    """Computes and caches packed masks for one compiled grammar (thread-safe)."""

    def __init__(self, grammar, *, cache_size: int, scanner: str = "trie") -> None:
        self.grammar = grammar
        tok = grammar.tokenizer
        self.scans = scan_cache_for(tok, scanner)
        self._masks: OrderedDict = OrderedDict()
        self._shapes: dict[int, tuple] = {}
        self._bases: dict[tuple, int] = {}
        self._cache_size = cache_size
        self._max_depth = grammar.dpda.max_stack_depth
        self._lock = threading.Lock()
        self._eos_words = pack_token_ids(np.array(tok.eos_token_ids, dtype=np.int64), tok.num_words)
        self.eos_mask = self._eos_words

    def mask(self, config) -> np.ndarray:
        """The packed int32 mask of ``config`` (a cached array: copy it, never write it).

        Cached by exactly what the computation read (as ``dpda.StackMemo``): the top ``depth`` states,
        plus the height where a depth-limit check failed or the bottom was read; a hit also needs the
        new height to leave room for every depth check that passed (``Touch.peak``).
        """
        stack, lexer, q = config
        base = lexer.mask_base[q]
        if base is None:
            base = self._base_id(lexer, q)
        height = stack[1]
        for depth, exact in self._shapes.get(base, ()):
            key = (base, depth, height if exact else -1, _top(stack, depth))
            hit = self._masks.get(key)
            if hit is not None and height + hit[1] <= self._max_depth:
                try:  # LRU touch without the lock: a racing eviction only costs a recomputation
                    self._masks.move_to_end(key)
                except KeyError:
                    pass
                return hit[0]
        touch = Touch(height)
        words = self._compute(config, touch)
        depth = height - touch.low + 1
        exact = touch.hit_limit or touch.low <= 0
        with self._lock:
            shapes = self._shapes.get(base, ())
            if (depth, exact) not in shapes:  # replaced, never mutated: readers iterate lock-free
                self._shapes[base] = shapes + ((depth, exact),)
            key = (base, depth, height if exact else -1, _top(stack, depth))
            self._masks[key] = (words, touch.peak - height)
            while len(self._masks) > self._cache_size:
                self._masks.popitem(last=False)
        return words

    def _base_id(self, lexer: UnionLexer, q: int) -> int:
        """Small id of what a mask depends on besides the stack (lexer states with equal content share it)."""
        with self._lock:
            base = self._bases.setdefault((lexer.signature[q], lexer.alive_terms[q]), len(self._bases))
        lexer.mask_base[q] = base
        return base

    def _compute(self, config, touch: Touch) -> np.ndarray:
        stack, lexer, q = config
        root = self.scans.root(lexer, q)
        words = root.words.copy()
        self._descend(root, lexer, q, stack, words, touch)
        if self.grammar.is_complete(config, touch):
            words |= self._eos_words
        return words

    def _descend(self, node: ScanNode, lexer: UnionLexer, state: int, stack: Stack, words: np.ndarray,
                 touch: Touch) -> None:
        """OR into ``words`` the tokens of ``node``'s groups that the parser lets through."""
        for index, (pos, _) in enumerate(node.groups):
            after = self.grammar.end_terminal(stack, lexer.alive_terms[state][pos], touch)
            if after is None:
                continue
            next_lexer = self.grammar.lexer_for(after, touch)
            child = node.child(index, next_lexer, self.scans.scanner)
            words |= child.words
            if child.groups:
                self._descend(child, next_lexer, 0, after, words, touch)


def _top(stack: Stack, depth: int) -> tuple:
    out = []
    for _ in range(depth):
        out.append(stack[0])
        stack = stack[2]
        if stack is None:
            break
    return tuple(out)
