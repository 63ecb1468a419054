"""CompiledGrammar: the immutable product of compilation, shared by any number of matchers.

A matcher configuration is ``(stack, lexer, q)``: the LR stack (an immutable cons list), the product
lexer of the terminals live under that stack, and the lexer state (0 = at a terminal boundary). This
module holds the byte-level transition function over configurations; token masks live in
``token_mask.py``. The only mutable parts are memo tables and caches (thread-safe, bounded).

Decoding calls ``feed_bytes`` and the termination checks for every token of every request, so their
results are memoised: a token's walk inside one lexer (no stack involved) by ``(lexer, state, bytes)``,
and everything that reads the stack in a :class:`StackMemo`, keyed by exactly the top of the stack it
read (``Touch``). Setting ``memoize = False`` runs the plain definitions (tests compare the two).
"""
from __future__ import annotations

import threading

from lightllm_struct.grammar.lexing.byte_dfa import ByteDFA
from lightllm_struct.grammar.deadline import NO_DEADLINE, Deadline
from lightllm_struct.grammar.parsing.dpda import DPDA, MISS, Stack, StackMemo, Touch
from lightllm_struct.grammar.lexing.lexer import UnionLexer, build_union
from lightllm_struct.grammar.parsing.lr import LRTables
from lightllm_struct.grammar.vocab.tokenizer_info import TokenizerInfo

Config = tuple  # (stack, lexer: UnionLexer, q: int)
_DEPTH_LOOKAHEAD = 2  # terminals looked ahead near the stack-depth limit
_DEAD, _CROSSES = -1, -2  # results of lexing a token from a lexer state, besides the state it ends in
# Tokens shorter than this are lexed byte by byte: as fast as a memo lookup, and no memo entry to make.
_MEMO_MIN_BYTES = 8


class CompiledGrammar:
    """A grammar compiled against one vocabulary. Create with :class:`GrammarCompiler`.

    ``memo_size`` bounds the runtime memos (each starts afresh when full): about 7 MB at most by default.

    Attributes
    ----------
    memoize : bool
        Use the runtime memos (default). False runs the plain definitions, which tests and
        ``grammar_runtime_bench.py --exact`` compare against; switch it only while no matcher runs.
    """

    def __init__(self, tokenizer: TokenizerInfo, lr: LRTables, dfas: list[ByteDFA], *,
                 max_stack_depth: int, max_lexer_states: int, mask_cache_size: int, source: str,
                 scanner: str = "trie", memo_size: int = 1 << 15) -> None:
        from lightllm_struct.grammar.masks.token_mask import TokenMasker

        self.tokenizer = tokenizer
        self.lr = lr
        self.dfas = dfas
        self.source = source
        # JSON pointers of schema keywords compiled without (unsupported="report"): never dropped in silence
        self.unsupported: tuple[str, ...] = ()
        self.dpda = DPDA(lr, max_stack_depth=max_stack_depth)
        self._ignore = frozenset(lr.ignore)
        self._max_lexer_states = max_lexer_states
        self._lexers: dict[frozenset, UnionLexer] = {}
        self._lexer_lock = threading.Lock()
        self.memoize = True
        self._lexing: dict[tuple, int] = {}  # (lexer, q, bytes) -> end state, _DEAD or _CROSSES
        self._lexing_size = memo_size
        self._cells: dict[tuple, Stack] = {}  # (id(stack), state) -> the cell (state, height, stack)
        self._memo_min_bytes = _MEMO_MIN_BYTES
        small = max(memo_size // 16, 64)
        self._crossings = StackMemo(max_stack_depth, capacity=memo_size // 8)  # tokens crossing terminals
        self._lexer_memo = StackMemo(max_stack_depth, capacity=small)
        self._completes = StackMemo(max_stack_depth, capacity=small)
        self._continues = StackMemo(max_stack_depth, capacity=small)
        self.masker = TokenMasker(self, cache_size=mask_cache_size, scanner=scanner)
        self._distances = None
        self._budget_masks = None

    @property
    def distances(self):
        """Shortest finishes of configurations (:class:`~lightllm_struct.grammar.finish.FinishDistance`),
        built on first use: the engine builds it right after compiling, in the compile thread."""
        if self._distances is None:
            from lightllm_struct.grammar.finish import FinishDistance

            with self._lexer_lock:
                if self._distances is None:
                    self._distances = FinishDistance(self)
        return self._distances

    @property
    def budget_masks(self):
        """Budget-aware mask restriction (:class:`~lightllm_struct.grammar.masks.budget.BudgetMasks`)."""
        if self._budget_masks is None:
            from lightllm_struct.grammar.masks.budget import BudgetMasks

            self.distances  # noqa: B018 -- built before taking the lock, which building it takes too
            with self._lexer_lock:
                if self._budget_masks is None:
                    self._budget_masks = BudgetMasks(self)
        return self._budget_masks

    def nbytes(self) -> int:
        """An estimate of the bytes this grammar holds now, its caches included (``footprint.py``): it grows
        as masks are cached. Byte-bounded grammar caches (the engine's, the server's) evict by it."""
        from lightllm_struct.grammar.footprint import grammar_nbytes

        return grammar_nbytes(self)

    def min_output_tokens(self) -> int:
        """The fewest tokens any complete output takes: ``ceil(shortest sentence bytes / longest token)``.

        A lower bound: no tokenization of the shortest sentence can use fewer tokens, so a budget below it
        is impossible for certain (at or above it, finishing in time is guaranteed only from the shortest
        sentence's byte count, every byte being a token).
        """
        start = self.distances.start_any
        longest = max(self.tokenizer.max_token_len, 1)
        return -(-int(start) // longest) if start != float("inf") else -1

    # -- configurations ---------------------------------------------------------------------------
    def initial_config(self) -> Config:
        stack = self.dpda.bottom
        return (stack, self.lexer_for(stack), 0)

    def lexer_for(self, stack: Stack, touch: Touch | None = None) -> UnionLexer:
        """The product lexer of the terminals the parser can shift on ``stack`` (plus ignored ones)."""
        return self._memoised(self._lexer_memo, stack[0], stack, touch, self._lexer_for)

    def _lexer_for(self, stack: Stack, _top: int, touch: Touch) -> UnionLexer:
        live = [t for t in self.dpda.acceptable(stack[0])
                if t != self.lr.end and self._viable(stack, t, touch, _DEPTH_LOOKAHEAD)]
        return self.union_lexer(frozenset(live) | self._ignore)

    def _viable(self, stack: Stack, term: int, touch: Touch, lookahead: int) -> bool:
        """Whether ``term`` can be shifted without walking into the stack-depth limit.

        Near the limit a shift that fits can still leave no terminal that fits after it (an opening
        bracket at the last level); looking a few terminals ahead keeps such dead ends out of masks.
        """
        after = self.dpda.advance(stack, term, touch)
        if after is None:
            return False
        if lookahead == 0:
            return True
        if after[1] + _DEPTH_LOOKAHEAD < self.dpda.max_stack_depth:
            touch.peak = max(touch.peak, after[1] + _DEPTH_LOOKAHEAD + 1)  # the test passed: record it
            return True
        touch.hit_limit = True  # the answer depends on the absolute height
        return self.dpda.accepts_end(after, touch) or any(
            self._viable(after, t, touch, lookahead - 1)
            for t in self.dpda.acceptable(after[0]) if t != self.lr.end and t not in self._ignore)

    def union_lexer(self, live: frozenset, deadline: Deadline = NO_DEADLINE) -> UnionLexer:
        lexer = self._lexers.get(live)
        if lexer is None:
            with self._lexer_lock:
                lexer = self._lexers.get(live)
                if lexer is None:
                    lexer = build_union(len(self._lexers), live, self.dfas, self.lr.terminals,
                                        max_states=self._max_lexer_states, horizon=max(self.tokenizer.max_token_len, 1),
                                        deadline=deadline)
                    self._lexers[live] = lexer
        return lexer

    def end_terminal(self, stack: Stack, term: int, touch: Touch | None = None) -> Stack | None:
        """The stack after the lexer ended terminal ``term`` (ignored terminals leave it unchanged)."""
        if term in self._ignore:
            return stack
        return self.dpda.advance(stack, term, touch)

    # -- bytes ------------------------------------------------------------------------------------
    def feed_bytes(self, config: Config, data: bytes) -> Config | None:
        """The configuration after ``data``, or None if some byte cannot continue the sentence."""
        if not self.memoize:
            return self._feed(config, data, None)
        stack, lexer, q = config
        key = None
        if len(data) < self._memo_min_bytes:
            end = _lex(lexer, q, data)
        else:
            key = (lexer, q, data)
            end = self._lexing.get(key)
            if end is None:
                end = _lex(lexer, q, data)
                if len(self._lexing) >= self._lexing_size:  # start afresh: bounded, lookups need no lock
                    self._lexing.clear()
                self._lexing[key] = end
        if end >= 0:
            return (stack, lexer, end)
        if end == _DEAD:
            return None
        key = key or (lexer, q, data)
        edit = self._crossings.get(key, stack)
        if edit is MISS:
            edit = self._memoised(self._crossings, key, stack, None, self._crossing)
        if edit is None:
            return None
        pop, push, lexer, q = edit
        for _ in range(pop):
            stack = stack[2]
        return (self._push(stack, push) if push else stack, lexer, q)

    def _push(self, stack: Stack, push: tuple) -> Stack:
        """``stack`` with the states ``push`` on top, each cell one shared object per (cell below, state).

        Stacks are immutable, so sharing cells changes no result; it makes equal stacks the same object
        however they were reached (every cell is interned on the one below it, down to the shared bottom),
        so requests in one state are told apart by identity cheaply (``Matcher.mask_state``, the batch
        fill's grouping). Bounded: starts afresh when full (equal stacks may then be distinct objects).
        """
        cells = self._cells
        for state in push:
            key = (id(stack), state)
            hit = cells.get(key)
            if hit is not None and hit[2] is stack:  # the entry keeps ``stack`` alive: its id is not reused
                stack = hit
                continue
            cell = (state, stack[1] + 1, stack)
            if len(cells) >= self._lexing_size:
                cells.clear()
            cells[key] = cell
            stack = cell
        return stack

    def _crossing(self, stack: Stack, key: tuple, touch: Touch) -> tuple | None:
        """A token that crosses a terminal boundary, as an edit of the stack: (pop, push, lexer, q)."""
        lexer, q, data = key
        after = self._feed((stack, lexer, q), data, touch)
        return None if after is None else _as_edit(stack, after, touch.low)

    def _feed(self, config: Config, data: bytes, touch: Touch | None) -> Config | None:
        """``feed_bytes`` byte by byte."""
        stack, lexer, q = config
        for b in data:
            nq = lexer.rows[q][b]
            if nq < 0:
                term = lexer.accept_list[q]
                if term < 0:
                    return None
                stack = self.end_terminal(stack, term, touch)
                if stack is None:  # only the stack depth limit can refuse a live terminal
                    return None
                lexer = self.lexer_for(stack, touch)
                nq = lexer.rows[0][b]
                if nq < 0:
                    return None
            q = nq
        return (stack, lexer, q)

    # -- termination ------------------------------------------------------------------------------
    def is_complete(self, config: Config, touch: Touch | None = None) -> bool:
        """Whether the bytes so far form a whole sentence (EOS may come now)."""
        stack, lexer, q = config
        if q == 0:
            return self.dpda.accepts_end(stack, touch)
        term = lexer.accept_list[q]
        return term >= 0 and self._memoised(self._completes, term, stack, touch, self._completes_after)

    def _completes_after(self, stack: Stack, term: int, touch: Touch) -> bool:
        after = self.end_terminal(stack, term, touch)
        return after is not None and self.dpda.accepts_end(after, touch)

    def can_continue(self, config: Config) -> bool:
        """Whether any byte can come next (``next_bytes`` is non-empty), cheaply."""
        stack, lexer, q = config
        if lexer.has_out[q]:
            return True
        term = lexer.accept_list[q]
        return term >= 0 and self._memoised(self._continues, term, stack, None, self._continues_after)

    def _continues_after(self, stack: Stack, term: int, touch: Touch) -> bool:
        after = self.end_terminal(stack, term, touch)
        return after is not None and self.lexer_for(after, touch).has_out[0]

    def next_bytes(self, config: Config) -> set[int]:
        """Every byte that can come next (EOS not included)."""
        stack, lexer, q = config
        out = {b for b in range(256) if lexer.rows[q][b] >= 0}
        term = lexer.accept_list[q]
        if term >= 0:
            after = self.end_terminal(stack, term)
            if after is not None:
                start = self.lexer_for(after).rows[0]
                out.update(b for b in range(256) if start[b] >= 0)
        return out

    def _memoised(self, memo: StackMemo, key, stack: Stack, touch: Touch | None, compute):
        """``compute(stack, key, touch)`` through ``memo``; the caller's touch learns what was read."""
        if self.memoize:
            got = memo.get(key, stack, touch)
            if got is not MISS:
                return got
        inner = Touch(stack[1])
        got = compute(stack, key, inner)
        if self.memoize:
            memo.put(key, stack, inner, got)
        if touch is not None:
            touch.absorb(inner.low, inner.hit_limit, inner.peak)
        return got


def _lex(lexer: UnionLexer, q: int, data: bytes) -> int:
    """Run ``data`` inside one lexer: the state it ends in, or where it stops (_DEAD or _CROSSES)."""
    rows = lexer.rows
    for b in data:
        nq = rows[q][b]
        if nq < 0:
            return _CROSSES if lexer.accept_list[q] >= 0 else _DEAD
        q = nq
    return q


def _as_edit(stack: Stack, after: Config, low: int) -> tuple:
    """``after`` as (cells popped from ``stack``, states pushed, lexer, q).

    Only cells at height >= ``low`` were read, so only they can have been popped: the new stack keeps
    one of them (the same object) and pushes fresh cells above it.
    """
    read: dict[int, Stack] = {}
    cell = stack
    while cell is not None and cell[1] >= low:
        read[cell[1]] = cell
        cell = cell[2]
    pushed: list[int] = []
    cell = after[0]
    while read.get(cell[1]) is not cell:
        pushed.append(cell[0])
        cell = cell[2]
    return (stack[1] - cell[1], tuple(reversed(pushed)), after[1], after[2])
