"""One batched sampling kernel: grammar mask, temperature, min-p, top-k, top-p and seeded noise in one launch.

Each row is split over several programs (more at small batch sizes, to fill the device); nothing of size
``V`` is materialised and the host never waits. Every program scans its slice for the greedy arg-max and,
for rows without top-k/top-p, runs the exponential race on it; the last program of a row to finish (an
acq_rel atomic counter orders the slices' stores before it) merges the slices. For a row with top-k/top-p
that program then also does, over the whole row:

1. Min-p, top-k, then top-p over the renormalised kept distribution, each as a threshold on the scaled logit
   (min-p's is ``z_max + log(min_p)``, as ``p_t >= min_p * p_max``; the others are searched):
   an 8-ary search (8 candidate thresholds counted per pass, 7 passes) finds the largest threshold whose
   kept set still holds ``k`` tokens / ``top_p`` of the mass. Ties at the threshold are all kept; tokens
   more than ``_SEARCH_RANGE`` below the maximum (relative probability < 1e-13) count as outside the search.
2. The race over the kept tokens.

The race: the winner is ``argmax z_t - log(E_t)`` with ``E_t = -log(u_t)``, which picks ``t`` with
probability ``softmax(z)_t``; ``u_t`` is a Philox hash of ``(seed, step, t)``, so a request's draws depend
only on its own seed and step, never on its batch neighbours.

The bitmask is int32 ``[B, W]``: bit ``j`` of word ``i`` allows token ``32*i + j``; columns of the logits at
or beyond ``32*W`` are never chosen. A row with nothing allowed returns 0.
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from lightllm_struct.kernels._common import check, check_tensor, next_pow2, num_sms
from lightllm_struct.kernels.penalties import apply_penalties
from lightllm_struct.kernels.reference import philox_uniform

_SEARCH_RANGE = 30.0
_SEARCH_CANDIDATES = 8
_SEARCH_PASSES = 7


@triton.jit
def _load_scaled(logits_ptr, mask_ptr, row, cols, ok, inv_temp, stride_l, stride_m, HAS_MASK: tl.constexpr):
    """Logits of ``cols`` over the temperature, -inf where out of range or masked off; and the lanes kept."""
    z = tl.load(logits_ptr + row * stride_l + cols, mask=ok, other=float("-inf")).to(tl.float32)
    if HAS_MASK:
        ok = ok & (((tl.load(mask_ptr + row * stride_m + cols // 32, mask=ok, other=0) >> (cols % 32)) & 1) != 0)
    return tl.where(ok, z * inv_temp, float("-inf")), ok


@triton.jit
def _max_pass(logits_ptr, mask_ptr, row, lo, hi, inv_temp, stride_l, stride_m,
              HAS_MASK: tl.constexpr, BLOCK: tl.constexpr):
    """Maximum scaled logit over the allowed tokens of columns ``[lo, hi)`` and its lowest index."""
    offs = tl.arange(0, BLOCK)
    best = tl.full([BLOCK], float("-inf"), tl.float32)
    best_idx = tl.zeros([BLOCK], tl.int32)
    for start in range(lo, hi, BLOCK):
        cols = start + offs
        ok = cols < hi
        z, ok = _load_scaled(logits_ptr, mask_ptr, row, cols, ok, inv_temp, stride_l, stride_m, HAS_MASK)
        better = z > best  # strict: the first (lowest) index wins ties, like torch.argmax
        best_idx = tl.where(better, cols, best_idx)
        best = tl.where(better, z, best)
    z_max = tl.max(best, axis=0)
    # A row with nothing allowed is all -inf: every lane ties and the answer falls back to index 0.
    return z_max, tl.min(tl.where(best == z_max, best_idx, hi), axis=0)


@triton.jit
def _threshold_search(logits_ptr, mask_ptr, row, n_valid, inv_temp, stride_l, stride_m, z_max, floor,
                      target_frac, top_k, active, USE_MASS: tl.constexpr, HAS_MASK: tl.constexpr,
                      BLOCK: tl.constexpr, CAND: tl.constexpr, PASSES: tl.constexpr):
    """Largest threshold ``c >= floor`` whose kept set ``z >= c`` holds ``top_k`` tokens (``USE_MASS`` off)
    or ``target_frac`` of the mass ``exp(z - z_max)`` above ``floor`` (``USE_MASS`` on)."""
    offs = tl.arange(0, BLOCK)
    target = top_k.to(tl.float32)
    mass = tl.zeros([BLOCK], tl.float32)
    for start in range(0, tl.where(active & USE_MASS, n_valid, 0), BLOCK):
        cols = start + offs
        ok = cols < n_valid
        z, ok = _load_scaled(logits_ptr, mask_ptr, row, cols, ok, inv_temp, stride_l, stride_m, HAS_MASK)
        mass += tl.where(z >= floor, tl.exp(z - z_max), 0.0)
    if USE_MASS:
        target = target_frac * tl.sum(mass, axis=0)
    lo = floor
    # Strictly above the maximum, so the kept set at ``hi`` is empty and always below target.
    hi = z_max + 1e-3 + tl.abs(z_max) * 1e-6
    j = (tl.arange(0, CAND) + 1).to(tl.float32)
    for _ in range(0, tl.where(active, PASSES, 0)):
        step = (hi - lo) / (CAND + 1)
        cand = lo + step * j
        # Per-lane partial counts, reduced once per pass: a reduction per chunk would dominate the time.
        total2d = tl.zeros([BLOCK, CAND], tl.float32)
        for start in range(0, n_valid, BLOCK):
            cols = start + offs
            ok = cols < n_valid
            z, ok = _load_scaled(logits_ptr, mask_ptr, row, cols, ok, inv_temp, stride_l, stride_m, HAS_MASK)
            w = tl.exp(z - z_max) if USE_MASS else tl.where(ok, 1.0, 0.0)
            total2d += tl.where(z[:, None] >= cand[None, :], w[:, None], 0.0)
        n_ok = tl.sum((tl.sum(total2d, axis=0) >= target).to(tl.float32), axis=0)
        lo, hi = lo + step * n_ok, lo + step * (n_ok + 1.0)
    return lo


@triton.jit
def _race_pass(logits_ptr, mask_ptr, row, lo, hi, inv_temp, stride_l, stride_m, tau, seed, step, active,
               HAS_MASK: tl.constexpr, BLOCK: tl.constexpr):
    """Exponential race over the kept tokens ``z >= tau`` of columns ``[lo, hi)`` with Philox noise of
    ``(seed, step, token)``: the best key and its token."""
    offs = tl.arange(0, BLOCK)
    step_lo = tl.zeros([BLOCK], tl.uint32) + (step & 0xFFFFFFFF).to(tl.uint32)
    step_hi = tl.zeros([BLOCK], tl.uint32) + (step >> 32).to(tl.uint32)
    zero = tl.zeros([BLOCK], tl.uint32)
    key_best = tl.full([BLOCK], float("-inf"), tl.float32)
    key_idx = tl.zeros([BLOCK], tl.int32)
    for start in range(lo, tl.where(active, hi, lo), BLOCK):
        cols = start + offs
        ok = cols < hi
        z, ok = _load_scaled(logits_ptr, mask_ptr, row, cols, ok, inv_temp, stride_l, stride_m, HAS_MASK)
        r0, _r1, _r2, _r3 = tl.philox(seed, cols.to(tl.uint32), step_lo, step_hi, zero)
        # 24 random bits centred in their bucket; the top one rounds to 1.0 in float32 (log(-log(1)) = -inf,
        # a sure win), so u is clamped to the largest float32 below 1 (as engine/sampler.py does).
        u = tl.minimum(((r0 >> 8).to(tl.float32) + 0.5) * 5.960464477539063e-08, 0.99999994)
        key = tl.where(z >= tau, z - tl.log(-tl.log(u)), float("-inf"))
        better = key > key_best
        key_idx = tl.where(better, cols, key_idx)
        key_best = tl.where(better, key, key_best)
    k_max = tl.max(key_best, axis=0)
    return k_max, tl.min(tl.where(key_best == k_max, key_idx, hi), axis=0)


@triton.jit
def _sample_kernel(logits_ptr, temp_ptr, top_p_ptr, top_k_ptr, min_p_ptr, seed_ptr, step_ptr, mask_ptr, out_ptr,
                   part_val_ptr, part_idx_ptr, count_ptr, n_valid, n_parts, stride_l, stride_m, search_range,
                   HAS_MASK: tl.constexpr, BLOCK: tl.constexpr, SEARCH_BLOCK: tl.constexpr, CAND: tl.constexpr,
                   PASSES: tl.constexpr, BLOCK_P: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    part = tl.program_id(1)
    temp = tl.load(temp_ptr + row)
    top_k = tl.load(top_k_ptr + row)
    top_p = tl.load(top_p_ptr + row)
    min_p = tl.load(min_p_ptr + row)
    seed = tl.load(seed_ptr + row)
    step = tl.load(step_ptr + row).to(tl.uint64)
    do_sample = temp > 0.0
    search = do_sample & ((top_k > 0) | (top_p < 1.0) | (min_p > 0.0))
    inv_temp = tl.where(do_sample, 1.0 / tl.where(do_sample, temp, 1.0), 1.0)
    # Every program scans one slice of the row: the greedy arg-max and (without top-k/top-p) the race.
    span = ((n_valid + n_parts - 1) // n_parts + BLOCK - 1) // BLOCK * BLOCK
    lo = tl.minimum(part * span, n_valid)
    hi = tl.minimum(lo + span, n_valid)
    z_part, greedy_part = _max_pass(logits_ptr, mask_ptr, row, lo, hi, inv_temp, stride_l, stride_m, HAS_MASK,
                                    BLOCK)
    key_part, race_part = _race_pass(logits_ptr, mask_ptr, row, lo, hi, inv_temp, stride_l, stride_m,
                                     float("-inf"), seed, step, do_sample & ~search, HAS_MASK, BLOCK)
    slot = (row * n_parts + part) * 2
    tl.store(part_val_ptr + slot, z_part)
    tl.store(part_val_ptr + slot + 1, key_part)
    tl.store(part_idx_ptr + slot, greedy_part)
    tl.store(part_idx_ptr + slot + 1, race_part)
    # The last program of the row to finish (acq_rel atomic: it sees every slice's stores) merges them.
    if tl.atomic_add(count_ptr + row, 1) == n_parts - 1:
        p = tl.arange(0, BLOCK_P)
        p_ok = p < n_parts
        base = (row * n_parts + p) * 2
        vals = tl.load(part_val_ptr + base, mask=p_ok, other=float("-inf"), volatile=True)
        idxs = tl.load(part_idx_ptr + base, mask=p_ok, other=n_valid, volatile=True)
        z_max = tl.max(vals, axis=0)
        greedy = tl.min(tl.where(vals == z_max, idxs, n_valid), axis=0)
        keys = tl.load(part_val_ptr + base + 1, mask=p_ok, other=float("-inf"), volatile=True)
        key_idx = tl.load(part_idx_ptr + base + 1, mask=p_ok, other=n_valid, volatile=True)
        raced = tl.min(tl.where(keys == tl.max(keys, axis=0), key_idx, n_valid), axis=0)
        floor = tl.maximum(z_max - search_range, z_max + tl.log(tl.where(min_p > 0.0, min_p, 1e-30)))
        tau = _threshold_search(logits_ptr, mask_ptr, row, n_valid, inv_temp, stride_l, stride_m, z_max,
                                floor, 1.0, top_k, search & (top_k > 0), False, HAS_MASK,
                                SEARCH_BLOCK, CAND, PASSES)
        tau = _threshold_search(logits_ptr, mask_ptr, row, n_valid, inv_temp, stride_l, stride_m, z_max, tau,
                                top_p, top_k, search & (top_p < 1.0), True, HAS_MASK, SEARCH_BLOCK, CAND,
                                PASSES)
        _k, searched = _race_pass(logits_ptr, mask_ptr, row, 0, n_valid, inv_temp, stride_l, stride_m, tau,
                                  seed, step, search, HAS_MASK, BLOCK)
        result = tl.where(search, searched, tl.where(do_sample, raced, greedy))
        # Nothing allowed at all: every candidate index is the sentinel; answer 0 like torch.argmax would.
        tl.store(out_ptr + row, tl.where(result < n_valid, result, 0).to(tl.int64))


def _check_args(logits, temperature, top_p, top_k, min_p, seed, step, bitmask) -> None:
    check_tensor("logits", logits, ndim=2, dtypes=(torch.float32, torch.float16, torch.bfloat16))
    batch, device = logits.shape[0], logits.device
    for name, t, dtypes in (("temperature", temperature, (torch.float32,)), ("top_p", top_p, (torch.float32,)),
                            ("min_p", min_p, (torch.float32,)),
                            ("top_k", top_k, (torch.int32, torch.int64)), ("seed", seed, (torch.int64,)),
                            ("step", step, (torch.int64,))):
        check_tensor(name, t, ndim=1, dtypes=dtypes, device=device)
        check(t.shape[0] == batch, f"{name} has {t.shape[0]} entries for a batch of {batch}")
    if bitmask is not None:
        check_tensor("bitmask", bitmask, ndim=2, dtypes=(torch.int32,), device=device)
        check(bitmask.shape[0] == batch, f"bitmask has {bitmask.shape[0]} rows for a batch of {batch}")


def sample_tokens(logits: torch.Tensor, *, temperature: torch.Tensor, top_p: torch.Tensor,
                  top_k: torch.Tensor, seed: torch.Tensor, step: torch.Tensor, min_p: torch.Tensor | None = None,
                  bitmask: torch.Tensor | None = None, block: int = 4096, num_warps: int = 8) -> torch.Tensor:
    """Next token of every row of ``logits [B, V]`` in one launch (see the module docstring).

    Parameters
    ----------
    temperature:
        ``[B]`` float32; 0 means greedy (top-k/top-p ignored).
    top_p, top_k, min_p:
        ``[B]``; ``top_p >= 1``, ``top_k == 0`` and ``min_p == 0`` (the default, None) switch them off.
    seed, step:
        ``[B]`` int64 (seed in ``[0, 2**63)``); the noise of a row depends only on these two.
    bitmask:
        ``[B, W]`` int32 grammar mask or None (everything allowed).

    Returns
    -------
    torch.Tensor
        ``[B]`` int64 token ids.

    Raises
    ------
    KernelArgumentError
        On wrong shapes, dtypes or devices.
    """
    if min_p is None:
        min_p = torch.zeros_like(temperature)
    _check_args(logits, temperature, top_p, top_k, min_p, seed, step, bitmask)
    batch, vocab = logits.shape
    out = torch.empty(batch, dtype=torch.int64, device=logits.device)
    if batch == 0:
        return out
    n_valid = vocab if bitmask is None else min(vocab, 32 * bitmask.shape[1])
    mask_arg = bitmask if bitmask is not None else top_k
    # Split each row over enough programs to fill the device at small batch sizes.
    n_parts = max(1, min(triton.cdiv(n_valid, block), triton.cdiv(4 * num_sms(logits.device), batch), 64))
    part_val = torch.empty(batch, n_parts, 2, dtype=torch.float32, device=logits.device)
    part_idx = torch.empty(batch, n_parts, 2, dtype=torch.int32, device=logits.device)
    count = torch.zeros(batch, dtype=torch.int32, device=logits.device)
    _sample_kernel[(batch, n_parts)](
        logits, temperature, top_p, top_k, min_p, seed, step, mask_arg, out, part_val, part_idx, count, n_valid, n_parts,
        logits.stride(0), bitmask.stride(0) if bitmask is not None else 0, _SEARCH_RANGE,
        HAS_MASK=bitmask is not None, BLOCK=block, SEARCH_BLOCK=min(block, 1024), CAND=_SEARCH_CANDIDATES,
        PASSES=_SEARCH_PASSES, BLOCK_P=next_pow2(n_parts), num_warps=num_warps)
    return out


def sample(logits: torch.Tensor, params, bitmask: torch.Tensor | None = None) -> torch.Tensor:
    """The engine's sampler signature: ``params`` carries ``temperature/top_p/top_k/min_p/seed/step`` tensors
    and ``penalties`` (a :class:`~lightllm_struct.kernels.reference.SparsePenalties` or None), applied to
    ``logits`` in place first."""
    if params.penalties is not None:
        apply_penalties(logits, params.penalties)
    return sample_tokens(logits, temperature=params.temperature, top_p=params.top_p, top_k=params.top_k,
                         min_p=params.min_p, seed=params.seed, step=params.step, bitmask=bitmask)


def allowed_reference(bitmask: torch.Tensor | None, batch: int, vocab: int) -> torch.Tensor:
    """``[B, V]`` bool: which columns a bitmask allows (columns past its width never)."""
    if bitmask is None:
        return torch.ones(batch, vocab, dtype=torch.bool)
    bits = (bitmask.cpu().long()[:, :, None] >> torch.arange(32)) & 1
    allowed = bits.reshape(batch, -1).bool()[:, :vocab]
    return torch.nn.functional.pad(allowed, (0, vocab - allowed.shape[1]), value=False)


def kept_distribution_reference(logits: torch.Tensor, *, temperature: float, top_p: float, top_k: int,
                                allowed: torch.Tensor, min_p: float = 0.0) -> torch.Tensor:
    """Sampling distribution ``[V]`` (float64) of one row after mask, temperature, min-p, top-k and top-p."""
    z = torch.where(allowed, logits.double().cpu() / temperature, float("-inf"))
    # The kernel's threshold search starts _SEARCH_RANGE below the maximum; plain sampling has no floor.
    tau = float(z.max()) - _SEARCH_RANGE if (top_k > 0 or top_p < 1.0 or min_p > 0) else float("-inf")
    if min_p > 0:
        tau = max(tau, float(z.max()) + math.log(min_p))
    ordered = z.sort(descending=True).values
    if 0 < top_k < int(allowed.sum()):
        tau = max(tau, float(ordered[top_k - 1]))
    if top_p < 1.0:
        mass = torch.where(ordered >= tau, (ordered - ordered[0]).exp(), 0.0)
        cum = mass.cumsum(0)
        tau = max(tau, float(ordered[int(torch.searchsorted(cum, top_p * cum[-1]))]))
    return torch.where(z >= tau, z, float("-inf")).softmax(0)


def sample_reference(logits: torch.Tensor, *, temperature: torch.Tensor, top_p: torch.Tensor,
                     top_k: torch.Tensor, seed: torch.Tensor, step: torch.Tensor, min_p: torch.Tensor | None = None,
                     bitmask: torch.Tensor | None = None) -> torch.Tensor:
    """Plain torch version of :func:`sample_tokens`, drawing the same Philox noise row by row."""
    batch, vocab = logits.shape
    allowed = allowed_reference(bitmask, batch, vocab)
    out = torch.zeros(batch, dtype=torch.int64)
    for b in range(batch):
        if not allowed[b].any():
            continue
        if float(temperature[b]) == 0.0:
            out[b] = torch.where(allowed[b], logits[b].float().cpu(), float("-inf")).argmax()
            continue
        probs = kept_distribution_reference(logits[b], temperature=float(temperature[b]),
                                            top_p=float(top_p[b]), top_k=int(top_k[b]), allowed=allowed[b],
                                            min_p=0.0 if min_p is None else float(min_p[b]))
        token = torch.arange(vocab, dtype=torch.int64)
        u = philox_uniform(torch.full_like(token, int(seed[b])), torch.full_like(token, int(step[b])), token).double()
        key = torch.where(probs > 0, probs.log() - (-u.log()).log(), float("-inf"))
        out[b] = key.argmax()
    return out.to(logits.device)
