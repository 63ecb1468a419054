"""DPDA steps record what they read (Touch), and StackMemo reuses a result only where it must be the same."""
from __future__ import annotations

from lightllm_struct.grammar.parsing.dpda import DPDA, MISS, StackMemo, Touch, stack_states
from lightllm_struct.grammar.parsing.lr import build_lr_tables

NEST = r"""
start: item
item: "(" item ")" | "x"
"""


def stack_of(states: list[int]):
    """A stack from its states, bottom first."""
    stack = None
    for height, state in enumerate(states):
        stack = (state, height, stack)
    return stack


def test_advance_records_depth_read_and_heights_compared():
    lr = build_lr_tables(NEST)
    dpda = DPDA(lr, max_stack_depth=6)
    term = {t.name: i for i, t in enumerate(lr.terminals)}
    stack = dpda.bottom
    for _ in range(3):
        stack = dpda.advance(stack, term["LPAR"])
    touch = Touch(stack[1])
    after = dpda.advance(stack, term["LPAR"], touch)  # a shift reads the top alone
    assert after[1] == 4 and touch.low == 3 and touch.peak == 4 and not touch.hit_limit
    after = dpda.advance(after, term["X"])
    touch = Touch(after[1])
    closed = dpda.advance(after, term["RPAR"], touch)  # reduces item -> "x" first: reads below the top
    assert closed[1] == 6 and touch.low == 4 and touch.peak == 6
    deep = stack
    for _ in range(3):
        deep = dpda.advance(deep, term["LPAR"])
    assert deep[1] == 6 and len(set(stack_states(deep)[:5])) == 1  # "(" after "(": one LR state
    touch = Touch(deep[1])
    assert dpda.advance(deep, term["LPAR"], touch) is None and touch.hit_limit


def test_stack_memo_keys_on_the_cells_read():
    memo = StackMemo(100, capacity=10)
    stack = stack_of([0, 1, 2, 3])
    touch = Touch(3)
    touch.low = 2  # read the top two cells
    memo.put("k", stack, touch, "value")
    assert memo.get("k", stack_of([0, 9, 2, 3])) == "value"  # deeper cells differ: same result
    assert memo.get("k", stack_of([5, 6, 7, 8, 0, 1, 2, 3])) == "value"  # other height too
    assert memo.get("k", stack_of([0, 1, 9, 3])) is MISS
    assert memo.get("other", stack) is MISS


def test_stack_memo_respects_the_depth_limit():
    memo = StackMemo(10, capacity=10)
    stack = stack_of([0, 1, 2])
    touch = Touch(2)
    touch.peak = 6  # a check needed height 6 to fit: 4 above the stack
    memo.put("k", stack, touch, True)
    assert memo.get("k", stack_of([7, 7, 7, 7, 0, 1, 2])) is True  # 6 + 4 fits under 10
    assert memo.get("k", stack_of([7] * 5 + [0, 1, 2])) is MISS  # 7 + 4 does not: recompute
    limited = Touch(2)
    limited.hit_limit = True
    memo.put("h", stack, limited, False)
    assert memo.get("h", stack) is False
    assert memo.get("h", stack_of([7, 1, 2])) is False  # same height, same top
    assert memo.get("h", stack_of([7, 0, 1, 2])) is MISS  # other height
    assert memo.get("h", stack_of([1, 2])) is MISS


def test_stack_memo_hit_tells_the_outer_touch_what_was_read():
    memo = StackMemo(50, capacity=10)
    inner = Touch(3)
    inner.low, inner.peak = 1, 7
    memo.put("k", stack_of([0, 1, 2, 3]), inner, "v")
    outer = Touch(13)
    assert memo.get("k", stack_of(list(range(10)) + [0, 1, 2, 3]), outer) == "v"
    assert (outer.low, outer.hit_limit, outer.peak) == (11, False, 17)


def test_bottom_reads_are_exact_and_memo_is_bounded():
    memo = StackMemo(50, capacity=3, max_shapes=2)
    whole = Touch(1)
    whole.low = 0
    memo.put("k", stack_of([4, 5]), whole, "v")
    assert memo.get("k", stack_of([4, 5])) == "v"
    assert memo.get("k", stack_of([3, 4, 5])) is MISS  # something below: not the same input
    for i in range(4):
        touch = Touch(1)
        memo.put(("n", i), stack_of([4, i]), touch, i)
        assert len(memo) <= 3
    assert memo.get(("n", 3), stack_of([4, 3])) == 3
    for low in (2, 1, 0):  # a third shape of one key is not remembered
        touch = Touch(2)
        touch.low = low
        memo.put("s", stack_of([1, 2, 3]), touch, low)
    assert memo.get("s", stack_of([1, 2, 3])) in (2, 1)
    assert stack_states(stack_of([1, 2, 3])) == [3, 2, 1]
