from __future__ import annotations

import pytest
import torch

from lightllm_struct.kernels._common import KernelArgumentError
from lightllm_struct.kernels.sampling import (
    allowed_reference, kept_distribution_reference, sample_reference, sample_tokens,
)


def _params(batch, device, *, temperature=1.0, top_p=1.0, top_k=0, seed0=0, step=0):
    return dict(temperature=torch.full((batch,), temperature, device=device),
                top_p=torch.full((batch,), top_p, device=device),
                top_k=torch.full((batch,), top_k, dtype=torch.int32, device=device),
                seed=torch.arange(seed0, seed0 + batch, dtype=torch.int64, device=device),
                step=torch.full((batch,), step, dtype=torch.int64, device=device))


def _random_mask(batch, vocab, g, density=0.3):
    allowed = torch.rand(batch, vocab, generator=g) < density
    allowed[:, 0] |= ~allowed.any(1)  # at least one token a row
    words = (vocab + 31) // 32
    bits = torch.nn.functional.pad(allowed, (0, 32 * words - vocab)).reshape(batch, words, 32).long()
    packed = (bits << torch.arange(32)).sum(-1)
    return torch.where(packed >= 2 ** 31, packed - 2 ** 32, packed).int(), allowed


def _sizes(mode):
    # (batch, vocab, block): the GPU runs Llama 3's vocabulary; the interpreter a tiny one in small blocks.
    return (64, 128256, 4096) if mode.gpu else (8, 70, 64)


def test_greedy_is_argmax_over_allowed_and_ignores_padded_columns(mode):
    batch, vocab, block = _sizes(mode)
    g = torch.Generator().manual_seed(0)
    padded = vocab + 37
    logits = torch.randn(batch, padded, generator=g)
    logits[:, vocab:] = 100.0  # padded columns past the mask's width must never win
    mask, allowed = _random_mask(batch, vocab, g)
    out = sample_tokens(logits.to(mode.device), **_params(batch, mode.device, temperature=0.0),
                        bitmask=mask.to(mode.device), block=block)
    expected = torch.where(allowed, logits[:, :vocab], float("-inf")).argmax(1)
    assert torch.equal(out.cpu(), expected)
    free = sample_tokens(logits[:, :vocab].contiguous().to(mode.device),
                         **_params(batch, mode.device, temperature=0.0), block=block)
    assert torch.equal(free.cpu(), logits[:, :vocab].argmax(1))


@pytest.mark.parametrize("top_k, top_p", [(0, 1.0), (4, 0.7)])
def test_masked_tokens_never_sampled(mode, top_k, top_p):
    batch, vocab, block = _sizes(mode)
    batch = 2048 if mode.gpu else 16
    g = torch.Generator().manual_seed(top_k)
    logits = torch.randn(1, vocab, generator=g).repeat(batch, 1)
    mask, allowed = _random_mask(1, vocab, g, density=0.2)
    logits[:, ~allowed[0]] += 8.0  # the forbidden tokens are the likeliest ones
    out = sample_tokens(logits.to(mode.device), **_params(batch, mode.device, temperature=1.3, top_k=top_k,
                                                           top_p=top_p), bitmask=mask.repeat(batch, 1).to(mode.device),
                        block=block).cpu()
    assert bool(allowed[0, out].all())


def _assert_matches_distribution(draws: torch.Tensor, probs: torch.Tensor) -> None:
    freq = torch.bincount(draws, minlength=probs.numel()).double() / draws.numel()
    assert float(freq[probs == 0].sum()) == 0.0  # cut off by the mask, top-k or top-p: never drawn
    tv = 0.5 * float((freq - probs).abs().sum())
    # Sampling noise alone gives E[TV] ~ sqrt(K / (2 pi N)) over K live tokens; allow three times that.
    live = int((probs > 1e-4).sum())
    assert tv < 3 * (live / (6.28 * draws.numel())) ** 0.5 + 0.01, f"total variation {tv:.4f}"


TOP_K_P = [(0, 1.0), (5, 1.0), (0, 0.75), (6, 0.8)]


@pytest.mark.gpu
@pytest.mark.parametrize("top_k, top_p", TOP_K_P)
def test_kernel_matches_reference_distribution(top_k, top_p):
    draws, vocab = 20000, 5000
    g = torch.Generator().manual_seed(100 + top_k)
    row = 1.5 * torch.randn(vocab, generator=g)
    out = sample_tokens(row.repeat(draws, 1).cuda(),
                        **_params(draws, "cuda", temperature=0.9, top_k=top_k, top_p=top_p, seed0=7)).cpu()
    _assert_matches_distribution(out, kept_distribution_reference(
        row, temperature=0.9, top_p=top_p, top_k=top_k, allowed=torch.ones(vocab, dtype=torch.bool)))


@pytest.mark.parametrize("top_k, top_p", TOP_K_P)
def test_philox_race_matches_reference_distribution(top_k, top_p):
    """The noise scheme the kernel shares with the reference (checked draw for draw below) is unbiased."""
    draws, vocab = 1500, 24
    g = torch.Generator().manual_seed(100 + top_k)
    row = 1.5 * torch.randn(vocab, generator=g)
    out = sample_reference(row.repeat(draws, 1), **_params(draws, "cpu", temperature=0.9, top_k=top_k,
                                                           top_p=top_p, seed0=7))
    _assert_matches_distribution(out, kept_distribution_reference(
        row, temperature=0.9, top_p=top_p, top_k=top_k, allowed=torch.ones(vocab, dtype=torch.bool)))


def test_matches_reference_draw_for_draw_and_is_reproducible(mode):
    batch, vocab, block = _sizes(mode)
    g = torch.Generator().manual_seed(3)
    logits = 2 * torch.randn(batch, vocab, generator=g)
    mask, _ = _random_mask(batch, vocab, g, density=0.5)
    params = _params(batch, "cpu", temperature=0.8, top_k=10, top_p=0.9, seed0=1000, step=5)
    params["temperature"][::4] = 0.0  # greedy rows mixed into the batch
    on_dev = {k: v.to(mode.device) for k, v in params.items()}
    out = sample_tokens(logits.to(mode.device), **on_dev, bitmask=mask.to(mode.device), block=block).cpu()
    ref = sample_reference(logits, **params, bitmask=mask)
    # Same Philox noise: fp32 vs float64 may flip only an exact near-tie, so nearly every draw agrees.
    assert (out == ref).float().mean() >= 0.95
    # A request's draw depends on (seed, step) alone: reversing the batch permutes the answers.
    rev = {k: v.flip(0) for k, v in on_dev.items()}
    out_rev = sample_tokens(logits.flip(0).to(mode.device), **rev, bitmask=mask.flip(0).to(mode.device),
                            block=block).cpu()
    assert torch.equal(out_rev.flip(0), out)
    on_dev["step"] += 1
    moved = sample_tokens(logits.to(mode.device), **on_dev, bitmask=mask.to(mode.device), block=block).cpu()
    sampled_rows = params["temperature"] > 0
    assert not torch.equal(moved[sampled_rows], out[sampled_rows])


def test_allowed_reference_unpacks_bits():
    mask = torch.tensor([[-1, 0b101]], dtype=torch.int32)
    allowed = allowed_reference(mask, 1, 70)
    assert allowed[0, :32].all() and allowed[0, 32] and not allowed[0, 33] and allowed[0, 34]
    assert not allowed[0, 35:].any()


def test_sampler_rejects_bad_arguments():
    params = _params(2, "cpu")
    with pytest.raises(KernelArgumentError, match="seed"):
        sample_tokens(torch.randn(2, 10), **{**params, "seed": torch.zeros(2, dtype=torch.int32)})
    with pytest.raises(KernelArgumentError, match="bitmask"):
        sample_tokens(torch.randn(2, 10), **params, bitmask=torch.zeros(3, 1, dtype=torch.int32))


@pytest.mark.parametrize("min_p, top_k", [(0.2, 0), (0.05, 3)])
def test_min_p_matches_reference_draw_for_draw(mode, min_p, top_k):
    batch, vocab, block = _sizes(mode)
    g = torch.Generator().manual_seed(11)
    logits = 2 * torch.randn(batch, vocab, generator=g)
    mask, allowed = _random_mask(batch, vocab, g, density=0.6)
    params = _params(batch, "cpu", temperature=0.9, top_k=top_k, seed0=50, step=2)
    params["min_p"] = torch.full((batch,), min_p)
    out = sample_tokens(logits.to(mode.device), **{k: v.to(mode.device) for k, v in params.items()},
                        bitmask=mask.to(mode.device), block=block).cpu()
    ref = sample_reference(logits, **params, bitmask=mask)
    assert (out == ref).float().mean() >= 0.95
    for b in range(batch):  # every draw is a token min-p keeps: p >= min_p * p_max among the allowed
        z = torch.where(allowed[b], logits[b] / 0.9, float("-inf"))
        assert float(z[out[b]]) >= float(z.max()) + torch.log(torch.tensor(min_p)) - 1e-5


def test_min_p_reference_distribution():
    draws, vocab = 1500, 24
    row = 1.5 * torch.randn(vocab, generator=torch.Generator().manual_seed(5))
    params = _params(draws, "cpu", temperature=0.9, seed0=3)
    out = sample_reference(row.repeat(draws, 1), **params, min_p=torch.full((draws,), 0.1))
    probs = kept_distribution_reference(row, temperature=0.9, top_p=1.0, top_k=0, min_p=0.1,
                                        allowed=torch.ones(vocab, dtype=torch.bool))
    assert int((probs > 0).sum()) < vocab  # min-p cut something off
    _assert_matches_distribution(out, probs)
