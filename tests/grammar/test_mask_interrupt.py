"""A step's mask budget interrupts a mask that would run past it (issue 11: one mask of ``(x{0,300}){0,300}``
made lazy lexer rows for 8 s while the whole batch waited): lazily made rows check the current deadline, and
an interrupted row leaves the automaton as it was."""
from __future__ import annotations

import re
import time

import numpy as np
import pytest

from lightllm_struct.grammar import Matcher
from lightllm_struct.grammar.batch_fill import BatchMaskFiller
from lightllm_struct.grammar.deadline import Deadline, compiling_within, current_deadline
from lightllm_struct.grammar.errors import CompileTimeout
from lightllm_struct.grammar.lexing.regex_dfa import lazy_regex_dfa


class _SlowRows(Matcher):
    """A mask that makes rows for 30 s (checking the deadline between them, as LazyDFA does)."""

    def __init__(self) -> None:
        self.rows = 0

    def mask_state(self) -> tuple:
        return ("slow",)

    def next_token_words(self, *, max_tokens_left=None):
        end = time.monotonic() + 30
        while time.monotonic() < end:
            current_deadline().check()
            self.rows += 1
            time.sleep(0.001)
        return np.zeros(4, dtype=np.int32)


def test_the_fill_interrupts_a_mask_at_the_budget():
    filler = BatchMaskFiller(4)
    slow = _SlowRows()
    start = time.monotonic()
    got = filler.fill([slow, None], slow_s=0.2)
    assert time.monotonic() - start < 5, "the fill waited for the whole mask"
    assert [i for i, _ in got.failed] == [0] and isinstance(got.failed[0][1], CompileTimeout)
    assert (got.rows[0] == -1).all() and (got.rows[1] == -1).all() and slow.rows > 0


def test_an_interrupted_lazy_row_leaves_the_automaton_whole():
    dfa = lazy_regex_dfa("(x{0,30}){0,30}y", max_states=200_000)
    states = dfa.num_states
    expired = Deadline(0.0)
    time.sleep(0.01)
    with compiling_within(expired), pytest.raises(CompileTimeout):
        dfa.row(0)
    assert dfa.num_states == states  # nothing half made
    state = 0
    for byte in b"xxxy":  # and the rows made afterwards are right (re.fullmatch is the reference)
        state = int(dfa.row(state)[byte])
    assert state >= 0 and dfa.is_accepting(state) == bool(re.fullmatch("(x{0,30}){0,30}y", "xxxy"))
