"""CompiledGrammar: the immutable product of compilation, shared by any number of matchers.

A matcher configuration is ``(stack, lexer, q)``: the LR stack (an immutable cons list), the product
lexer of the terminals live under that stack, and the lexer state (0 = at a terminal boundary). This
module holds the byte-level transition function over configurations; token masks live in
``token_mask.py``. The only mutable parts are memo tables and caches, each guarded by a lock.
"""
from __future__ import annotations

import threading

from lightllm_struct.grammar.byte_dfa import ByteDFA
from lightllm_struct.grammar.deadline import NO_DEADLINE, Deadline
from lightllm_struct.grammar.dpda import DPDA, Stack, Touch
from lightllm_struct.grammar.lexer import UnionLexer, build_union
from lightllm_struct.grammar.lr import LRTables
from lightllm_struct.grammar.vocab import TokenizerInfo

Config = tuple  # (stack, lexer: UnionLexer, q: int)
_DEPTH_LOOKAHEAD = 2  # terminals looked ahead near the stack-depth limit


class CompiledGrammar:
    """A grammar compiled against one vocabulary. Create with :class:`GrammarCompiler`."""

    def __init__(self, tokenizer: TokenizerInfo, lr: LRTables, dfas: list[ByteDFA], *,
                 max_stack_depth: int, max_lexer_states: int, mask_cache_size: int, source: str,
                 scanner: str = "trie") -> None:
        from lightllm_struct.grammar.token_mask import TokenMasker

        self.tokenizer = tokenizer
        self.lr = lr
        self.dfas = dfas
        self.source = source
        self.dpda = DPDA(lr, max_stack_depth=max_stack_depth)
        self._ignore = frozenset(lr.ignore)
        self._max_lexer_states = max_lexer_states
        self._lexers: dict[frozenset, UnionLexer] = {}
        self._lexer_lock = threading.Lock()
        self.masker = TokenMasker(self, cache_size=mask_cache_size, scanner=scanner)

    # -- configurations ---------------------------------------------------------------------------
    def initial_config(self) -> Config:
        stack = self.dpda.bottom
        return (stack, self.lexer_for(stack), 0)

    def lexer_for(self, stack: Stack, touch: Touch | None = None) -> UnionLexer:
        """The product lexer of the terminals the parser can shift on ``stack`` (plus ignored ones)."""
        live = [t for t in self.dpda.acceptable(stack[0])
                if t != self.lr.end and self._viable(stack, t, touch, _DEPTH_LOOKAHEAD)]
        return self.union_lexer(frozenset(live) | self._ignore)

    def _viable(self, stack: Stack, term: int, touch: Touch | None, lookahead: int) -> bool:
        """Whether ``term`` can be shifted without walking into the stack-depth limit.

        Near the limit a shift that fits can still leave no terminal that fits after it (an opening
        bracket at the last level); looking a few terminals ahead keeps such dead ends out of masks.
        """
        after = self.dpda.advance(stack, term, touch)
        if after is None:
            return False
        if lookahead == 0 or after[1] + _DEPTH_LOOKAHEAD < self.dpda.max_stack_depth:
            return True
        if touch is not None:
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

    def feed_bytes(self, config: Config, data: bytes) -> Config | None:
        """The configuration after ``data``, or None if some byte cannot continue the sentence."""
        stack, lexer, q = config
        for b in data:
            nq = lexer.rows[q][b]
            if nq < 0:
                term = lexer.accept_list[q]
                if term < 0:
                    return None
                stack = self.end_terminal(stack, term)
                if stack is None:  # only the stack depth limit can refuse a live terminal
                    return None
                lexer = self.lexer_for(stack)
                nq = lexer.rows[0][b]
                if nq < 0:
                    return None
            q = nq
        return (stack, lexer, q)

    def is_complete(self, config: Config, touch: Touch | None = None) -> bool:
        """Whether the bytes so far form a whole sentence (EOS may come now)."""
        stack, lexer, q = config
        if q != 0:
            term = lexer.accept_list[q]
            if term < 0:
                return False
            stack = self.end_terminal(stack, term, touch)
            if stack is None:
                return False
        return self.dpda.accepts_end(stack, touch)

    def can_continue(self, config: Config) -> bool:
        """Whether any byte can come next (``next_bytes`` is non-empty), cheaply."""
        stack, lexer, q = config
        if lexer.has_out[q]:
            return True
        term = lexer.accept_list[q]
        if term < 0:
            return False
        after = self.end_terminal(stack, term)
        return after is not None and self.lexer_for(after).has_out[0]

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
