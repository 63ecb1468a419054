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


def _rows(seqs: list[Sequence]) -> dict[str, list]:
    return {"temperature": [s.req.sampling.temperature for s in seqs], "top_p": [s.req.sampling.top_p for s in seqs],
            "top_k": [s.req.sampling.top_k for s in seqs], "seed": [s.seed for s in seqs],
            "step": [s.num_output for s in seqs]}


def sampling_tensors(seqs: list[Sequence], device: torch.device) -> SamplingTensors:
    """The batch's sampling rows; a row that cannot be built fails its request and samples neutrally."""
    try:
        return SamplingTensors.from_lists(**_rows(seqs), device=device)
    except Exception:  # noqa: BLE001 -- find the culprit row by row below
        pass
    rows = _rows([])
    for seq in seqs:
        one = _rows([seq])
        try:
            SamplingTensors.from_lists(**one, device="cpu")
        except Exception as exc:  # noqa: BLE001 -- this request alone is at fault
            fail_request(seq, exc, "building its sampling parameters")
            one = {"temperature": [0.0], "top_p": [1.0], "top_k": [0], "seed": [0], "step": [0]}
        for name, value in one.items():
            rows[name] += value
    return SamplingTensors.from_lists(**rows, device=device)
