"""Token masks: which vocabulary tokens can come next in a configuration.

Work is split the way xgrammar's adaptive cache splits it, but along our automaton:

* A *scan node* is the vectorized run of a set of tokens (rows of the length-sorted byte matrix), from
  a byte offset, through one product lexer from one state. It depends on no stack. Tokens whose bytes all
  stay inside the lexer are allowed (live terminals are exact, so every lexer state can still finish);
  tokens that hit a byte without transition where the state accepts a terminal form a *group*
  ``(offset, terminal, rows)``; the others are rejected. Nodes are cached per ``(lexer, state)`` and their
  children per ``(group, next lexer)``.
* The stack-dependent part feeds each group's terminal to the parser once per group (not once per
  token) and descends into the child node of the lexer live afterwards.
* The whole mask is cached keyed by ``(lexer, state)`` plus exactly the top of the stack that the
  computation read (``Touch``), so configurations that differ only deeper down share the mask.
"""
from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np
import torch

from lightllm_struct.grammar.bitmask import pack_token_ids
from lightllm_struct.grammar.dpda import Stack, Touch
from lightllm_struct.grammar.lexer import UnionLexer


class ScanNode:
    """Result of scanning ``rows`` from byte ``offset`` through ``lexer`` starting in ``state``."""

    __slots__ = ("words", "groups", "children", "_lock")

    def __init__(self, words: np.ndarray, groups: list[tuple[int, int, np.ndarray]]) -> None:
        self.words = words  # packed tokens allowed without leaving the lexer
        self.groups = groups  # (offset, terminal, rows) of tokens that end a terminal inside them
        self.children: dict[tuple[int, int], ScanNode] = {}
        self._lock = threading.Lock()

    def child(self, index: int, lexer: UnionLexer, build) -> "ScanNode":
        key = (index, lexer.uid)
        node = self.children.get(key)
        if node is None:
            offset, _, rows = self.groups[index]
            node = build(lexer, 0, rows, offset)
            with self._lock:
                node = self.children.setdefault(key, node)
        return node


def scan_tokens(tok, lexer: UnionLexer, state: int, rows: np.ndarray, offset: int):
    """Vectorized lexer run over many tokens at once: (allowed rows, groups)."""
    table = lexer.table.reshape(-1)
    accept = lexer.accept
    matrix, lengths = tok.byte_matrix, tok.row_len
    cur = rows
    cur_len = lengths[cur]
    states = np.full(len(cur), state, dtype=np.int64)
    allowed: list[np.ndarray] = []
    groups: list[tuple[int, int, np.ndarray]] = []
    col = offset
    while len(cur):
        done = int(np.searchsorted(cur_len, col, side="right"))  # rows are sorted by length
        if done:
            allowed.append(cur[:done])
            cur, cur_len, states = cur[done:], cur_len[done:], states[done:]
            if not len(cur):
                break
        nxt = table[states * 256 + matrix[cur, col]]
        ok = nxt >= 0
        if not ok.all():
            stuck = ~ok
            terms = accept[states[stuck]]
            stuck_rows = cur[stuck]
            for term in np.unique(terms[terms >= 0]).tolist():
                groups.append((col, term, stuck_rows[terms == term]))
            cur, cur_len, nxt = cur[ok], cur_len[ok], nxt[ok]
        states = nxt
        col += 1
    return (np.concatenate(allowed) if allowed else np.zeros(0, dtype=np.int64)), groups


class TokenMasker:
    """Computes and caches packed masks for one compiled grammar (thread-safe)."""

    def __init__(self, grammar, *, cache_size: int) -> None:
        self.grammar = grammar
        self.tok = grammar.tokenizer
        self._roots: dict[tuple[int, int], ScanNode] = {}
        self._masks: OrderedDict = OrderedDict()
        self._shapes: dict[tuple[int, int], set] = {}
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._all_rows = np.arange(len(self.tok.row_token), dtype=np.int64)
        self._eos = np.array(self.tok.eos_token_ids, dtype=np.int64)

    def build_node(self, lexer: UnionLexer, state: int, rows: np.ndarray, offset: int) -> ScanNode:
        allowed, groups = scan_tokens(self.tok, lexer, state, rows, offset)
        return ScanNode(pack_token_ids(self.tok.row_token[allowed], self.tok.num_words), groups)

    def root(self, lexer: UnionLexer, state: int) -> ScanNode:
        key = (lexer.uid, state)
        node = self._roots.get(key)
        if node is None:
            node = self.build_node(lexer, state, self._all_rows, 0)
            with self._lock:
                node = self._roots.setdefault(key, node)
        return node

    def mask(self, config) -> torch.Tensor:
        """The packed int32 mask (a cached tensor: copy it, never write it)."""
        stack, lexer, q = config
        base = (lexer.uid, q)
        for depth, height in tuple(self._shapes.get(base, ())):
            if height >= 0 and height != stack[1]:
                continue
            key = (base, depth, height, _top(stack, depth))
            hit = self._masks.get(key)
            if hit is not None:
                with self._lock:
                    if key in self._masks:
                        self._masks.move_to_end(key)
                return hit
        touch = Touch(stack[1])
        words = self._compute(config, touch)
        depth = stack[1] - touch.low + 1
        height = stack[1] if touch.hit_limit else -1
        key = (base, depth, height, _top(stack, depth))
        tensor = torch.from_numpy(words)
        with self._lock:
            self._shapes.setdefault(base, set()).add((depth, height))
            self._masks[key] = tensor
            while len(self._masks) > self._cache_size:
                self._masks.popitem(last=False)
        return tensor

    def _compute(self, config, touch: Touch) -> np.ndarray:
        stack, lexer, q = config
        root = self.root(lexer, q)
        words = root.words.copy()
        self._descend(root, stack, words, touch)
        if len(self._eos) and self.grammar.is_complete(config, touch):
            words |= pack_token_ids(self._eos, self.tok.num_words)
        return words

    def _descend(self, node: ScanNode, stack: Stack, words: np.ndarray, touch: Touch) -> None:
        """OR into ``words`` the tokens of ``node``'s groups that the parser lets through."""
        for index, (_, term, _) in enumerate(node.groups):
            after = self.grammar.end_terminal(stack, term, touch)
            if after is None:
                continue
            lexer = self.grammar.lexer_for(after, touch)
            child = node.child(index, lexer, self.build_node)
            words |= child.words
            if child.groups:
                self._descend(child, after, words, touch)


def _top(stack: Stack, depth: int) -> tuple:
    out = []
    for _ in range(depth):
        out.append(stack[0])
        stack = stack[2]
        if stack is None:
            break
    return tuple(out)
