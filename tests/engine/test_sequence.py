"""Sequence: the engine's view of one request."""
from __future__ import annotations

import pytest

from lightllm_struct.engine.sequence import Sequence
from lightllm_struct.request import Request, RequestStatus, SamplingParams


def test_token_ids_slices_prompt_and_output_like_the_joined_list():
    req = Request(prompt_token_ids=[11, 12, 13, 14], sampling=SamplingParams())
    req.output_token_ids.extend([15, 16, 17])
    seq = Sequence(req=req, seed=0, detokenizer=None)
    joined = seq.all_token_ids
    for start in range(len(joined) + 1):
        for n in range(len(joined) - start + 1):
            assert seq.token_ids(start, n) == joined[start:start + n], (start, n)


def _fresh():
    return Sequence(req=Request(prompt_token_ids=[1], sampling=SamplingParams()), seed=0, detokenizer=None)


def test_status_moves_forward_but_for_preemption():
    seq = _fresh()
    seq.place(RequestStatus.WAITING_FOR_GRAMMAR)
    for status in (RequestStatus.WAITING, RequestStatus.RUNNING, RequestStatus.WAITING, RequestStatus.RUNNING):
        seq.transition(status)  # RUNNING -> WAITING is preemption, the one move back
        assert seq.status == status
    seq.finish(RequestStatus.FINISHED_LENGTH)
    with pytest.raises(AssertionError, match="FINISHED_LENGTH -> RUNNING"):
        seq.transition(RequestStatus.RUNNING)


@pytest.mark.parametrize("start,illegal", [(RequestStatus.WAITING, RequestStatus.WAITING_FOR_GRAMMAR),
                                           (RequestStatus.WAITING, RequestStatus.WAITING),
                                           (RequestStatus.WAITING_FOR_GRAMMAR, RequestStatus.RUNNING)])
def test_illegal_moves_are_refused(start, illegal):
    seq = _fresh()
    seq.place(start)
    with pytest.raises(AssertionError, match="illegal status move"):
        seq.transition(illegal)
    assert seq.status == start


def test_a_request_is_placed_once_in_a_starting_status():
    seq = _fresh()
    with pytest.raises(AssertionError):
        seq.place(RequestStatus.RUNNING)
    seq.place(RequestStatus.WAITING)
    with pytest.raises(AssertionError):
        seq.place(RequestStatus.WAITING_FOR_GRAMMAR)


def test_only_the_sequence_writes_a_status():
    """Every ``.status =`` assignment in the engine is inside Sequence (place / transition)."""
    import ast
    from pathlib import Path

    import lightllm_struct

    root = Path(lightllm_struct.__file__).parent
    writers = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            targets = node.targets if isinstance(node, ast.Assign) else \
                [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
            for t in targets:
                for leaf in (t.elts if isinstance(t, ast.Tuple) else [t]):
                    if isinstance(leaf, ast.Attribute) and leaf.attr == "status":
                        writers.append(f"{path.relative_to(root)}:{node.lineno}")
    assert writers and all(w.startswith("engine/sequence.py:") for w in writers), writers
