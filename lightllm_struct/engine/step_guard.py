"""Failure isolation inside a step: what goes wrong for one request fails that request, never the batch.

The edge (``SamplingParams``, ``Engine._validate``) refuses every value that could break the step's shared
tensors; these guards are the second line: should a row still fail (a new field, a matcher bug), the
culprit is found row by row, finished with a typed error, and the step goes on with a neutral row in its
place.
"""
from __future__ import annotations

import logging

import torch

from lightllm_struct.engine.sampler import SamplingTensors
from lightllm_struct.engine.sampling_batch import build_sampling_tensors
from lightllm_struct.engine.sequence import Sequence
from lightllm_struct.errors import LightLLMStructError
from lightllm_struct.request import RequestStatus

logger = logging.getLogger(__name__)


class EngineRequestError(LightLLMStructError):
    """An unexpected failure while processing one request's token (the others carry on)."""

    code = "engine_request_failed"


def fail_request(seq: Sequence, exc: BaseException, where: str) -> None:
    """Finish ``seq`` with ``exc`` as a typed error; the details of an untyped one go to the log only."""
    if not isinstance(exc, LightLLMStructError):
        logger.error("request %s failed while %s", seq.request_id, where, exc_info=exc)
        exc = EngineRequestError(f"the engine failed on this request while {where}")
    if not seq.finished:
        seq.finish(RequestStatus.FINISHED_ERROR, error=exc)


def sampling_tensors(seqs: list[Sequence], device: torch.device, *,
                     eos_token_ids: frozenset[int] = frozenset()) -> SamplingTensors:
    """The batch's sampling rows; a row that cannot be built fails its request and samples neutrally."""
    try:
        return build_sampling_tensors(seqs, eos_token_ids=eos_token_ids, device=device)
    except Exception:  # noqa: BLE001 -- find the culprit row by row below
        pass
    rows: list[Sequence | None] = []
    for seq in seqs:
        try:
            build_sampling_tensors([seq], eos_token_ids=eos_token_ids, device="cpu")
            rows.append(seq)
        except Exception as exc:  # noqa: BLE001 -- this request alone is at fault
            fail_request(seq, exc, "building its sampling parameters")
            rows.append(None)
    return build_sampling_tensors(rows, eos_token_ids=eos_token_ids, device=device)
