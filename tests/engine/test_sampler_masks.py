"""The grammar bitmask against every sampling option: a masked (or padded) token never wins.

Run on the torch sampler and, where CUDA is present, on the Triton kernel with the same inputs. The masks
favour the hard cases: the only allowed tokens lie far below (more than the noise's reach) a forbidden
maximum, forbidden tokens carry huge logits, top-k / top-p would keep only forbidden tokens if applied before
the mask, and the padded columns beyond the mask's width hold the row's largest logits.
"""
from __future__ import annotations

import math

import pytest
import torch

from lightllm_struct.engine.sampler import SamplingTensors, sample, uniform_noise

VOCAB, PADDED = 1000, 1100  # the mask covers ceil(1000/32) words = 1024 bits; logits are 1100 wide


def _samplers():
    out = [pytest.param(sample, "cpu", id="torch")]
    if torch.cuda.is_available():
        from lightllm_struct.kernels.sampling import sample as triton_sample

        out.append(pytest.param(triton_sample, "cuda", id="triton"))
    return out


def _mask_of(allowed: list[set[int]]) -> torch.Tensor:
    bits = torch.zeros(len(allowed), 32 * math.ceil(VOCAB / 32), dtype=torch.int64)
    for r, toks in enumerate(allowed):
        bits[r, list(toks)] = 1
    words = (bits.view(len(allowed), -1, 32) << torch.arange(32)).sum(-1)
    return torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)  # two's complement bit 31


def _hard_case(b: int, gen: torch.Generator) -> tuple[torch.Tensor, list[set[int]]]:
    logits = torch.randn(b, PADDED, generator=gen) * 3
    logits[:, VOCAB:] = 80.0  # padded columns: the largest logits of all
    allowed = []
    for r in range(b):
        order = logits[r, :VOCAB].argsort().tolist()
        k = 1 + r % 4
        # Even rows allow only the lowest logits (far below the max), odd rows a random few.
        toks = set(order[:k]) if r % 2 == 0 else set(torch.randperm(VOCAB, generator=gen)[:k].tolist())
        logits[r, order[-1]] = 60.0  # a forbidden token way above everything allowed
        allowed.append(toks - {order[-1]} or {order[0]})
    return logits, allowed


@pytest.mark.parametrize("sampler,device", _samplers())
@pytest.mark.parametrize("temperature,top_k,top_p", [(1.0, 0, 1.0), (1.0, 1, 1.0), (1.0, 5, 0.5), (2.0, 40, 0.9),
                                                     (0.3, 0, 0.95), (0.0, 0, 1.0)])
def test_masked_and_padded_tokens_never_win(sampler, device, temperature, top_k, top_p):
    gen = torch.Generator().manual_seed(int(temperature * 10) + top_k)
    logits, allowed = _hard_case(16, gen)
    mask = _mask_of(allowed).to(device)
    for step in range(40):
        params = SamplingTensors.from_lists(temperature=[temperature] * 16, top_p=[top_p] * 16, top_k=[top_k] * 16,
                                            seed=[1000 * step + r for r in range(16)], step=[step] * 16,
                                            device=device)
        tokens = sampler(logits.clone().to(device), params, mask).tolist()
        for r, t in enumerate(tokens):
            assert t in allowed[r], (step, r, t, sorted(allowed[r]))


@pytest.mark.parametrize("sampler,device", _samplers())
def test_allowed_tokens_far_below_a_forbidden_max_follow_their_softmax(sampler, device):
    # The noise is drawn only within reach of the row's maximum: that maximum must be the masked one.
    logits = torch.zeros(1, PADDED)
    logits[0, 500], logits[0, 3], logits[0, 7] = 100.0, -30.0, -31.0
    mask = _mask_of([{3, 7}]).to(device)
    n, hits = 3000, 0
    for step in range(n):
        params = SamplingTensors.from_lists(temperature=[1.0], top_p=[1.0], top_k=[0], seed=[42], step=[step],
                                            device=device)
        t = int(sampler(logits.clone().to(device), params, mask)[0])
        assert t in (3, 7)
        hits += t == 3
    expected = math.e / (1 + math.e)
    assert abs(hits / n - expected) < 4 * math.sqrt(expected * (1 - expected) / n)


@pytest.mark.parametrize("sampler,device", _samplers())
def test_a_row_that_allows_nothing_leaves_the_other_rows_alone(sampler, device):
    gen = torch.Generator().manual_seed(5)
    logits, allowed = _hard_case(4, gen)
    params = SamplingTensors.from_lists(temperature=[1.0] * 4, top_p=[0.9] * 4, top_k=[0, 5, 0, 0],
                                        seed=[1, 2, 3, 4], step=[9] * 4, device=device)
    full = sampler(logits.clone().to(device), params, _mask_of(allowed).to(device)).tolist()
    allowed[2] = set()  # a dead end: the grammar then rejects whatever comes, failing that request alone
    dead = sampler(logits.clone().to(device), params, _mask_of(allowed).to(device)).tolist()
    assert [dead[i] for i in (0, 1, 3)] == [full[i] for i in (0, 1, 3)]
    assert 0 <= dead[2] < PADDED


# (seed, step, token) whose 24 noise bits are all ones: (2**24 - 0.5) / 2**24 rounds to 1.0 in float32.
TOP_SEED, TOP_STEP, TOP_TOKEN, TOP_VOCAB = 2, 55, 31751, 49152


def test_noise_never_reaches_one():
    # Regression: u == 1.0 gave Gumbel noise +inf. That token won whatever its probability, and a masked token
    # got -inf + inf = NaN, which argmax takes for the maximum: "the grammar rejected sampled token 12460".
    u = uniform_noise(torch.tensor([TOP_SEED]), torch.tensor([TOP_STEP]), TOP_VOCAB)[0]
    assert float(u.max()) < 1.0 and float(u.min()) > 0.0
    assert torch.isfinite(-torch.log(-torch.log(u))).all()


@pytest.mark.parametrize("sampler,device", _samplers())
def test_a_token_whose_noise_tops_out_wins_only_by_its_probability(sampler, device):
    logits = torch.zeros(2, TOP_VOCAB)
    logits[0, TOP_TOKEN] = -15.0  # probability ~ 3e-7 / 49152: must not be drawn
    allowed = torch.full((2, TOP_VOCAB // 32), -1, dtype=torch.int32)
    allowed[1, TOP_TOKEN // 32] &= ~(1 << TOP_TOKEN % 32)  # row 1: an equal logit, but masked
    params = SamplingTensors.from_lists(temperature=[1.0, 1.0], top_p=[1.0, 1.0], top_k=[0, 0],
                                        seed=[TOP_SEED] * 2, step=[TOP_STEP] * 2, device=device)
    tokens = sampler(logits.to(device), params, allowed.to(device)).tolist()
    assert TOP_TOKEN not in tokens
