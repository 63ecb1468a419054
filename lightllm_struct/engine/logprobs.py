"""Log-probabilities for the requests that ask for them (nobody else pays for anything here).

Output tokens, ``processed_logprobs`` (the default): the distribution the token was actually drawn from,
i.e. the logits after penalties and logit bias, the grammar mask, the temperature, and min-p / top-k / top-p,
renormalised over what is left. A greedy row (temperature 0) reports that distribution at temperature 1 with
no min-p / top-k / top-p, since a point mass says nothing. ``raw_logprobs``: ``log_softmax`` of the model's
logits, before anything touched them. Prompt tokens are always the model's own (nothing is sampled there).

A log-probability of ``-inf`` (a token outside the kept set: possible only where the Triton kernel's threshold
search and the exact sort disagree on a near-tie) is reported as ``LOGPROB_FLOOR``, since JSON has no -inf.
"""
from __future__ import annotations

import torch

from lightllm_struct.engine.sampler import SamplingTensors, filter_top_k_top_p
from lightllm_struct.grammar.bitmask import apply_token_bitmask_inplace
from lightllm_struct.request import TokenLogprob

LOGPROB_FLOOR = -9999.0


def _entries(logprobs: torch.Tensor, tokens: torch.Tensor, top_n: list[int]) -> list[TokenLogprob]:
    """One entry a row: the logprob of ``tokens[row]`` and the row's best ``top_n[row]``."""
    logprobs = logprobs.clamp_min(LOGPROB_FLOOR)
    chosen = logprobs.gather(1, tokens[:, None].long())[:, 0].tolist()
    k = max(top_n, default=0)
    top_vals, top_ids = logprobs.topk(k, dim=-1) if k else (logprobs[:, :0], logprobs[:, :0].long())
    top_vals, top_ids = top_vals.tolist(), top_ids.tolist()
    return [TokenLogprob(int(t), lp, tuple(zip(ids[:n], vals[:n])))
            for t, lp, ids, vals, n in zip(tokens.tolist(), chosen, top_ids, top_vals, top_n)]


def processed_logprobs(logits: torch.Tensor, params, bitmask: torch.Tensor | None) -> torch.Tensor:
    """``log_softmax`` of the sampled-from distribution of each row of ``logits`` (already penalised)."""
    z = logits.float().clone()
    if bitmask is not None:
        apply_token_bitmask_inplace(z, bitmask)
    greedy = params.temperature <= 0
    z = z / torch.where(greedy, 1.0, params.temperature)[:, None]
    min_p = params.min_p if params.min_p is not None else torch.zeros_like(params.temperature)
    on = ~greedy & ((params.top_k > 0) | (params.top_p < 1) | (min_p > 0))
    if bool(on.any()):
        filtered = filter_top_k_top_p(z, params.top_k, params.top_p, min_p)
        z = torch.where(on[:, None], filtered, z)
    return z.log_softmax(dim=-1)


def sample_logprobs(*, processed: torch.Tensor, raw: torch.Tensor, params, bitmask: torch.Tensor | None,
                    tokens: torch.Tensor, top_n: list[int], modes: list[str]) -> list[TokenLogprob]:
    """Entries of the rows that asked (all arguments hold those rows only)."""
    out = processed_logprobs(processed, params, bitmask)
    is_raw = torch.tensor([m == "raw_logprobs" for m in modes], device=out.device)
    if bool(is_raw.any()):
        out = torch.where(is_raw[:, None], raw.float().log_softmax(dim=-1), out)
    return _entries(out, tokens, top_n)


def prompt_logprob_entries(logits: torch.Tensor, next_tokens: list[int], top_n: int) -> list[TokenLogprob]:
    """Entries for prompt tokens ``next_tokens`` from the logits of the positions before them."""
    tokens = torch.tensor(next_tokens, device=logits.device)
    return _entries(logits.float().log_softmax(dim=-1), tokens, [top_n] * len(next_tokens))


def record_sample_logprobs(seqs: list, rows: list[int], *, logits: torch.Tensor, raw: torch.Tensor, params,
                           bitmask: torch.Tensor | None, tokens: torch.Tensor) -> None:
    """Append the entry of this step's token to each asking sequence (``rows`` index ``seqs`` and
    ``logits``; ``logits`` is penalised by now, ``raw`` its rows as the model gave them)."""
    idx = torch.tensor(rows, device=logits.device)
    picked = SamplingTensors(temperature=params.temperature[idx], top_p=params.top_p[idx], top_k=params.top_k[idx],
                             seed=params.seed[idx], step=params.step[idx],
                             min_p=None if params.min_p is None else params.min_p[idx])
    entries = sample_logprobs(processed=logits[idx], raw=raw, params=picked,
                              bitmask=None if bitmask is None else bitmask[idx], tokens=tokens[idx],
                              top_n=[seqs[i].req.sampling.logprobs for i in rows],
                              modes=[seqs[i].req.sampling.logprobs_mode for i in rows])
    for i, entry in zip(rows, entries):
        req = seqs[i].req
        if req.output_logprobs is None:
            req.output_logprobs = []
        req.output_logprobs.append(entry)


def record_prompt_logprobs(seq, first: int, logits: torch.Tensor) -> None:
    """Fill the prompt entries of positions ``first + 1 ...`` from the logits of positions ``first ...``."""
    req = seq.req
    if req.prompt_logprobs is None:
        req.prompt_logprobs = [None] * len(req.prompt_token_ids)
    nxt = req.prompt_token_ids[first + 1:first + 1 + logits.shape[0]]
    for j, entry in enumerate(prompt_logprob_entries(logits, nxt, req.sampling.prompt_logprobs)):
        req.prompt_logprobs[first + 1 + j] = entry
