"""Sequence: the engine's view of one request."""
from __future__ import annotations

from lightllm_struct.engine.sequence import Sequence
from lightllm_struct.request import Request, SamplingParams


def test_token_ids_slices_prompt_and_output_like_the_joined_list():
    req = Request(prompt_token_ids=[11, 12, 13, 14], sampling=SamplingParams())
    req.output_token_ids.extend([15, 16, 17])
    seq = Sequence(req=req, seed=0, detokenizer=None)
    joined = seq.all_token_ids
    for start in range(len(joined) + 1):
        for n in range(len(joined) - start + 1):
            assert seq.token_ids(start, n) == joined[start:start + n], (start, n)
