from __future__ import annotations

import pytest
import torch

from lightllm_struct.kernels._common import KernelArgumentError
from lightllm_struct.kernels.penalties import apply_penalties
from lightllm_struct.kernels.reference import SparsePenalties
from lightllm_struct.kernels.reference import apply_penalties as apply_penalties_reference


def _dense_reference(logits, counts, seen, bias, rep, freq, pres):
    """The definitions over dense [B, V] tensors: what the sparse form must equal."""
    z = torch.where(seen, torch.where(logits > 0, logits / rep[:, None], logits * rep[:, None]), logits)
    return z - freq[:, None] * counts - pres[:, None] * (counts > 0) + bias


def _random_case(batch, vocab, g):
    logits = 3 * torch.randn(batch, vocab, generator=g)
    counts = torch.randint(0, 4, (batch, vocab), generator=g).float() * (torch.rand(batch, vocab, generator=g) < 0.2)
    seen = (counts > 0) | (torch.rand(batch, vocab, generator=g) < 0.1)
    bias = torch.where(torch.rand(batch, vocab, generator=g) < 0.05, 200 * torch.rand(batch, vocab, generator=g)
                       - 100, 0.0)
    rep = 0.5 + 1.5 * torch.rand(batch, generator=g)
    freq, pres = 4 * torch.rand(batch, generator=g) - 2, 4 * torch.rand(batch, generator=g) - 2
    rep[0], freq[0], pres[0] = 1.0, 0.0, 0.0  # a row without penalties (entries carry only its biases)
    entries = [{int(t): (float(counts[b, t]), float(seen[b, t]), float(bias[b, t]))
                for t in torch.nonzero(seen[b] | (bias[b] != 0)).flatten()} for b in range(batch)]
    pen = SparsePenalties.from_rows(entries, [(float(rep[b]), float(freq[b]), float(pres[b])) for b in range(batch)])
    return logits, pen, _dense_reference(logits, counts, seen, bias, rep, freq, pres)


def test_kernel_matches_dense_definition(mode):
    batch, vocab = (64, 128256) if mode.gpu else (5, 300)
    logits, pen, expected = _random_case(batch, vocab, torch.Generator().manual_seed(0))
    dev = SparsePenalties(pen.index.to(mode.device), pen.values.to(mode.device), pen.row_params.to(mode.device))
    out = apply_penalties(logits.to(mode.device), dev, block=64 if not mode.gpu else 256).cpu()
    assert torch.allclose(out, expected, rtol=1e-6, atol=1e-5)


def test_reference_matches_dense_definition():
    logits, pen, expected = _random_case(4, 200, torch.Generator().manual_seed(1))
    assert torch.allclose(apply_penalties_reference(logits.clone(), pen), expected, rtol=1e-6, atol=1e-5)


def test_empty_entries_change_nothing(mode):
    logits = torch.randn(3, 50)
    pen = SparsePenalties.from_rows([{}, {}, {}], [(1.5, 1.0, 1.0)] * 3)
    pen = SparsePenalties(pen.index.to(mode.device), pen.values.to(mode.device), pen.row_params.to(mode.device))
    assert torch.equal(apply_penalties(logits.clone().to(mode.device), pen).cpu(), logits)


def test_rejects_mismatched_rows():
    pen = SparsePenalties.from_rows([{1: (1.0, 1.0, 0.0)}], [(1.2, 0.0, 0.0)])
    with pytest.raises(KernelArgumentError, match="row_params"):
        apply_penalties(torch.randn(2, 10), pen)
