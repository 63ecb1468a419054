"""How work splits over ranks: even shards, balanced shards, and heads that follow their GQA group."""
from __future__ import annotations

import pytest

from lightllm_struct.models.parallel import TensorParallel
from lightllm_struct.models.layers import kv_head_range, q_head_range


def test_balanced_split_covers_everything_once():
    for total in range(4, 40):
        for size in (1, 2, 3, 4):
            spans = [TensorParallel(rank=r, size=size).shard_balanced(total) for r in range(size)]
            assert spans[0][0] == 0 and spans[-1][1] == total
            assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
            assert max(e - s for s, e in spans) - min(e - s for s, e in spans) <= 1
    with pytest.raises(ValueError):
        TensorParallel(rank=0, size=4).shard_balanced(3)


@pytest.mark.parametrize("heads,kv,size", [(9, 3, 2), (32, 8, 2), (32, 8, 4), (4, 1, 2), (4, 2, 4), (12, 3, 2)])
def test_query_heads_stay_with_their_kv_head(heads, kv, size):
    seen = set()
    for rank in range(size):
        tp = TensorParallel(rank=rank, size=size)
        (qa, qb), (ka, kb) = q_head_range(heads, kv, tp), kv_head_range(kv, tp)
        seen.update(range(qa, qb))
        # every local query head's KV head (GQA: head h uses KV head h // (heads // kv)) is held locally
        assert all(ka <= h // (heads // kv) < kb for h in range(qa, qb))
    assert seen == set(range(heads))
