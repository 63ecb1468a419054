from __future__ import annotations

import math

import torch

from lightllm_struct.engine.sampler import SamplingTensors, sample, uniform_noise
from lightllm_struct.grammar.bitmask import apply_token_bitmask_inplace


def _params(b, *, temperature=1.0, top_p=1.0, top_k=0, seed=0, step=0):
    return SamplingTensors.from_lists(temperature=[temperature] * b, top_p=[top_p] * b, top_k=[top_k] * b,
                                      seed=[seed + i for i in range(b)], step=[step] * b)


def test_greedy_is_argmax():
    logits = torch.randn(4, 100)
    assert torch.equal(sample(logits.clone(), _params(4, temperature=0)), logits.argmax(-1))


def test_bitmask_restricts_choice_and_free_rows_are_untouched():
    logits = torch.randn(2, 70)
    mask = torch.full((2, 3), -1, dtype=torch.int32)
    mask[0] = 0
    mask[0, 1] = 1 << 5  # only token 37 allowed in row 0
    out = sample(logits.clone(), _params(2, temperature=0), mask)
    assert out.tolist() == [37, int(logits[1].argmax())]


def test_columns_beyond_the_mask_are_never_sampled():
    logits = torch.zeros(1, 40)
    logits[0, 39] = 100.0
    mask = torch.full((1, 1), -1, dtype=torch.int32)  # covers tokens 0..31 only
    assert int(sample(logits.clone(), _params(1, temperature=0), mask)[0]) < 32
    masked = torch.zeros(1, 40)
    apply_token_bitmask_inplace(masked, mask)
    assert torch.isinf(masked[0, 32:]).all() and torch.isfinite(masked[0, :32]).all()


def test_same_seed_and_step_give_the_same_token_whatever_the_batch():
    torch.manual_seed(0)
    logits = torch.randn(5, 1000)
    params = SamplingTensors.from_lists(temperature=[1.0] * 5, top_p=[1.0] * 5, top_k=[0] * 5,
                                        seed=[11, 22, 33, 44, 55], step=[3, 0, 9, 1, 2])
    batch = sample(logits.clone(), params)
    for i in range(5):
        one = SamplingTensors.from_lists(temperature=[1.0], top_p=[1.0], top_k=[0], seed=[params.seed[i].item()],
                                         step=[params.step[i].item()])
        assert int(sample(logits[i:i + 1].clone(), one)[0]) == int(batch[i])


def test_noise_is_uniform_and_depends_on_seed_and_step():
    u = uniform_noise(torch.tensor([1, 1, 2]), torch.tensor([0, 1, 0]), 50_000)
    assert 0 < float(u.min()) and float(u.max()) < 1
    assert abs(float(u.mean()) - 0.5) < 0.01 and abs(float(u.std()) - math.sqrt(1 / 12)) < 0.01
    assert not torch.equal(u[0], u[1]) and not torch.equal(u[0], u[2])


def test_temperature_sampling_follows_softmax():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    n = 4000
    logits = probs.log().repeat(n, 1)
    params = SamplingTensors.from_lists(temperature=[1.0] * n, top_p=[1.0] * n, top_k=[0] * n,
                                        seed=list(range(n)), step=[0] * n)
    freq = torch.bincount(sample(logits, params), minlength=4).float() / n
    assert torch.allclose(freq, probs, atol=0.03)


def test_top_k_and_top_p_cut_the_tail():
    n = 2000
    logits = torch.tensor([2.0, 1.9, 1.8, 1.7, 0.0]).repeat(n, 1)
    seeds = list(range(n))
    top_k = sample(logits.clone(), SamplingTensors.from_lists(temperature=[1.0] * n, top_p=[1.0] * n,
                                                              top_k=[2] * n, seed=seeds, step=[0] * n))
    assert set(top_k.tolist()) == {0, 1}
    # Mass of tokens 0 and 1 is about 0.55 of 0.9 + the tail: top_p = 0.5 keeps the first two only.
    top_p = sample(logits.clone(), SamplingTensors.from_lists(temperature=[1.0] * n, top_p=[0.5] * n,
                                                              top_k=[0] * n, seed=seeds, step=[0] * n))
    assert set(top_p.tolist()) == {0, 1}
    free = sample(logits.clone(), _params(n))
    assert set(free.tolist()) == {0, 1, 2, 3, 4}


def test_noise_is_philox_4x32_10():
    """Random123's known answer: Philox-4x32-10 of counter 0 under key 0 starts with the word 0x6627e8d5,
    whose top 24 bits are the noise of token 0 at step 0 under seed 0."""
    u = uniform_noise(torch.tensor([0]), torch.tensor([0]), 3)[0, 0]
    assert float(u) == ((0x6627E8D5 >> 8) + 0.5) * 2.0 ** -24


def test_drawing_noise_only_near_the_maximum_changes_nothing():
    from lightllm_struct.engine.sampler import _gumbel_max

    torch.manual_seed(1)
    scaled = torch.randn(16, 3000) * 6
    seed, step = torch.arange(16) * 7919, torch.arange(16)
    full = (scaled - torch.log(-torch.log(uniform_noise(seed, step, 3000)))).argmax(dim=-1)
    assert torch.equal(_gumbel_max(scaled, seed, step), full)
