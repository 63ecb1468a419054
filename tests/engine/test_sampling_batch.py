from __future__ import annotations

import os

import pytest
import torch

from lightllm_struct.engine import sampler as torch_sampler
from lightllm_struct.engine.sampling_batch import MIN_TOKENS_BIAS, build_sampling_tensors, penalty_entries
from lightllm_struct.engine.sequence import Sequence
from lightllm_struct.kernels import reference
from lightllm_struct.request import Request, SamplingParams

EOS = frozenset({2})


def _seq(prompt, output, seed=0, **sampling) -> Sequence:
    req = Request(prompt_token_ids=list(prompt), sampling=SamplingParams(**sampling))
    req.output_token_ids.extend(output)
    return Sequence(req=req, seed=seed, detokenizer=None)


def test_entries_count_output_and_mark_prompt_for_repetition():
    seq = _seq([5, 6, 6], [6, 7, 7, 7], frequency_penalty=0.5, repetition_penalty=1.3, logit_bias={9: -3.0, 7: 1.0})
    assert penalty_entries(seq, eos_token_ids=EOS) == {
        6: (1.0, 1.0, 0.0), 7: (3.0, 1.0, 1.0), 5: (0.0, 1.0, 0.0), 9: (0.0, 0.0, -3.0)}
    # Without a repetition penalty the prompt is not part of the penalised set.
    assert set(penalty_entries(_seq([5], [6], presence_penalty=1.0), eos_token_ids=EOS)) == {6}


def test_min_tokens_holds_back_eos_and_stop_ids_until_reached():
    seq = _seq([1], [4], min_tokens=2, stop_token_ids=(8,), max_tokens=5)
    assert penalty_entries(seq, eos_token_ids=EOS) == {2: (0.0, 0.0, MIN_TOKENS_BIAS), 8: (0.0, 0.0, MIN_TOKENS_BIAS)}
    seq.req.output_token_ids.append(4)
    assert penalty_entries(seq, eos_token_ids=EOS) == {}


def test_batch_without_penalties_brings_none():
    params = build_sampling_tensors([_seq([1], []), _seq([2], [3])], eos_token_ids=EOS, device=torch.device("cpu"))
    assert params.penalties is None


def test_repetition_penalty_matches_transformers():
    from transformers import RepetitionPenaltyLogitsProcessor

    g = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(1, 40, generator=g)
    seq = _seq([3, 4, 5], [5, 9, 9], repetition_penalty=1.7, temperature=0)
    params = build_sampling_tensors([seq], eos_token_ids=EOS, device=torch.device("cpu"))
    ours = reference.apply_penalties(logits.clone(), params.penalties)
    theirs = RepetitionPenaltyLogitsProcessor(1.7)(torch.tensor([seq.req.all_token_ids]), logits.clone())
    assert torch.allclose(ours, theirs)


def _mixed_batch(vocab):
    g = torch.Generator().manual_seed(4)
    seqs = [_seq(torch.randint(0, vocab, (6,), generator=g).tolist(), torch.randint(0, vocab, (8,), generator=g)
                 .tolist(), seed=100 + i, **kw) for i, kw in enumerate([
                     dict(presence_penalty=1.5, frequency_penalty=0.7, temperature=0.8),
                     dict(repetition_penalty=1.4, min_p=0.1, temperature=1.0),
                     dict(logit_bias={3: 100.0}, temperature=0.5),
                     dict(temperature=0, frequency_penalty=2.0),
                     dict(min_tokens=10, max_tokens=20, top_k=5, temperature=1.2),
                     dict(temperature=0.9)])]
    return seqs, 3 * torch.randn(len(seqs), vocab, generator=g)


@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET", "0") in ("", "0") and not torch.cuda.is_available(),
                    reason="needs the Triton interpreter or a GPU")
def test_triton_sampler_matches_torch_reference_with_penalties_and_mask():
    from lightllm_struct.kernels import sampling as triton_sampler

    vocab = 96
    seqs, logits = _mixed_batch(vocab)
    mask = torch.full((len(seqs), 3), -1, dtype=torch.int32)
    mask[1, 0] = 0  # row 1: the grammar forbids tokens 0..31, whatever the penalties do
    params = build_sampling_tensors(seqs, eos_token_ids=EOS, device=torch.device("cpu"))
    ref = torch_sampler.sample(logits.clone(), params, mask)
    out = triton_sampler.sample(logits.clone(), params, mask)
    assert torch.equal(out, ref)
    assert int(ref[2]) == 3  # a +100 bias wins
    assert int(ref[1]) >= 32
    assert int(ref[4]) != 2  # min_tokens holds EOS back
    # The penalty moved the greedy row off its unpenalised arg-max when that token was already in the output.
    top = int(logits[3].argmax())
    assert (int(ref[3]) == top) == (top not in seqs[3].req.output_token_ids)


def test_seed_draws_do_not_depend_on_batch_neighbours():
    seqs, logits = _mixed_batch(64)
    full = torch_sampler.sample(logits.clone(), build_sampling_tensors(seqs, eos_token_ids=EOS, device=torch.device("cpu")))
    for i, seq in enumerate(seqs):
        alone = torch_sampler.sample(logits[i:i + 1].clone(),
                                     build_sampling_tensors([seq], eos_token_ids=EOS, device=torch.device("cpu")))
        assert int(alone[0]) == int(full[i])
