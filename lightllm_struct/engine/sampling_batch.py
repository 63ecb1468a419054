"""The sampler's per-step inputs: one row of settings per sampling sequence, penalties in sparse form.

Only rows whose request has penalties, a logit bias or a pending ``min_tokens`` bring penalty entries (see
kernels/penalties.py); a batch without any brings none and the sampler skips that pass altogether.
"""
from __future__ import annotations

from collections import Counter

import torch

from lightllm_struct.engine.sampler import SamplingTensors
from lightllm_struct.engine.sequence import Sequence
from lightllm_struct.kernels.reference import SparsePenalties
from lightllm_struct.request import SamplingParams

# ``min_tokens`` holds end-of-sequence back with a large finite bias rather than -inf: where the grammar
# allows nothing else (its output is complete) the token must still be chosen, and a finite logit keeps that
# row's choice well defined; anywhere else a logit 10^4 below the rest is never drawn (the Gumbel noise of
# 24-bit uniforms spans less than 20).
MIN_TOKENS_BIAS = -1.0e4


def penalty_entries(seq: Sequence, *, eos_token_ids: frozenset[int]) -> dict[int, tuple[float, float, float]]:
    """``{token: (output count, seen, bias)}`` of one sequence (empty for a request without penalties)."""
    params = seq.req.sampling
    counts = Counter(seq.req.output_token_ids)
    entries: dict[int, list[float]] = {}
    if params.presence_penalty or params.frequency_penalty or params.repetition_penalty != 1.0:
        for token, n in counts.items():
            entries[token] = [float(n), 1.0, 0.0]
    if params.repetition_penalty != 1.0:
        for token in set(seq.req.prompt_token_ids) - counts.keys():
            entries[token] = [0.0, 1.0, 0.0]
    for token, bias in params.logit_bias.items():
        entries.setdefault(token, [float(counts.get(token, 0)), float(token in counts), 0.0])[2] += bias
    if seq.num_output < params.min_tokens:
        held = set(params.stop_token_ids) | (set() if params.ignore_eos else set(eos_token_ids))
        for token in held:
            entries.setdefault(token, [float(counts.get(token, 0)), float(token in counts), 0.0])[2] += \
                MIN_TOKENS_BIAS
    return {t: (v[0], v[1], v[2]) for t, v in entries.items()}


_NEUTRAL = SamplingParams(temperature=0.0)


def build_sampling_tensors(seqs: list[Sequence | None], *, eos_token_ids: frozenset[int],
                           device: torch.device | str) -> SamplingTensors:
    """The sampler's inputs for ``seqs``, on ``device``; a None row samples greedily with nothing else."""
    params = [_NEUTRAL if s is None else s.req.sampling for s in seqs]
    penalties = None
    if any(p.has_penalties for p in params):
        entries = [penalty_entries(s, eos_token_ids=eos_token_ids) if p.has_penalties else {}
                   for s, p in zip(seqs, params)]
        row_params = [(p.repetition_penalty, p.frequency_penalty, p.presence_penalty) for p in params]
        penalties = SparsePenalties.from_rows(entries, row_params, device=device)
    return SamplingTensors.from_lists(
        temperature=[p.temperature for p in params], top_p=[p.top_p for p in params],
        top_k=[p.top_k for p in params], min_p=[p.min_p for p in params],
        seed=[0 if s is None else s.seed for s in seqs], step=[0 if s is None else s.num_output for s in seqs],
        penalties=penalties, device=device)
