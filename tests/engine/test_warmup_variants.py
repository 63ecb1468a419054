"""What compiles at first use, checked on the CPU: the Triton kernels that run outside the captured graphs
(sampling, penalties) change their compiled variant with the step's row count (a compile-time split constant
and Triton's specialisation of integer arguments: 1, a multiple of 16, any other), so the warm-up must run
every variant a server can meet. The kernels are replaced by recorders of each launch's specialisation key."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from lightllm_struct.engine.sampler import SamplingTensors
from lightllm_struct.engine.warmup import warm_sampler
from lightllm_struct.kernels import penalties, sampling
from lightllm_struct.kernels.reference import SparsePenalties

H200_SMS = 132
VOCAB = 49_152


def _int_class(v: int) -> str:
    return "1" if v == 1 else "16" if v % 16 == 0 else "i"


class _Recorder:
    """Stands in for a ``@triton.jit`` kernel: ``kernel[grid](*args, **constexprs)`` records the key Triton
    compiles a variant for (argument kinds, integers by class, the constants)."""

    def __init__(self, name: str, keys: set) -> None:
        self.name, self.keys = name, keys

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            kinds = tuple(str(a.dtype) if isinstance(a, torch.Tensor) else _int_class(a) if isinstance(a, int)
                          else type(a).__name__ for a in args)
            self.keys.add((self.name, kinds, tuple(sorted(kwargs.items()))))
        return launch


@pytest.fixture
def keys(monkeypatch) -> set:
    seen: set = set()
    monkeypatch.setattr(sampling, "_sample_kernel", _Recorder("sample", seen))
    monkeypatch.setattr(penalties, "_penalty_kernel", _Recorder("penalty", seen))
    monkeypatch.setattr(sampling, "num_sms", lambda device: H200_SMS)
    return seen


def _served_keys(keys: set, rows: int) -> set:
    """Every launch a server of ``rows`` sequences can make: each row count, masked or not, penalties on a
    few rows with few or many entries."""
    logits = torch.zeros(rows, VOCAB)
    mask = torch.full((rows, VOCAB // 32), -1, dtype=torch.int32)
    for b in range(1, rows + 1):
        params = SamplingTensors.from_lists(temperature=[0.7] * b, top_p=[1.0] * b, top_k=[0] * b, seed=[0] * b,
                                            step=[0] * b)
        for bitmask in (None, mask[:b]):
            sampling.sample(logits[:b], params, bitmask)
        for n in (1, 3, 17, 32, 5 * b):
            entries = [{t: (1.0, 1.0, 0.0) for t in range(n)}] + [{}] * (b - 1)
            params.penalties = SparsePenalties.from_rows(entries, [(1.1, 0.0, 0.0)] * b)
            sampling.sample(logits[:b], params, None)
    served = set(keys)
    keys.clear()
    return served


def test_the_sampling_kernel_compiles_several_variants_across_batch_sizes(keys):
    served = _served_keys(keys, 256)
    splits = {dict(k[2])["BLOCK_P"] for k in served if k[0] == "sample"}
    assert splits == {16, 8, 4}  # on an H200 (132 SMs): so a warm-up at one batch size leaves compiles to the first big batches
    assert {k for k in served if k[0] == "penalty"}


@pytest.mark.parametrize("rows", [64, 256])
def test_the_warm_up_runs_every_variant_a_server_can_meet(keys, rows):
    served = _served_keys(keys, rows)
    engine = SimpleNamespace(device=torch.device("cpu"), model_config=SimpleNamespace(vocab_size=VOCAB),
                             config=SimpleNamespace(max_num_seqs=rows), sampler=sampling.sample)
    assert warm_sampler(engine) == 2 * rows + 9
    assert served <= keys, f"not warmed: {sorted(served - keys)}"
