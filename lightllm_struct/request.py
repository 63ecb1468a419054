"""The central data model: sampling parameters, requests, their ordered status, and outputs."""
from __future__ import annotations

import enum
import itertools
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any

from lightllm_struct.errors import InvalidRequestError

# The step packs seeds into int64 and top_k into int32 tensors: a value outside these ranges would fail the
# whole batch's step, so it is refused here, at the edge.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
INT32_MAX = 2**31 - 1
MAX_LOGPROBS = 20  # as OpenAI's top_logprobs
LOGPROBS_MODES = ("processed_logprobs", "raw_logprobs")  # vLLM's names for the two


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True, kw_only=True)
class SamplingParams:
    """How to pick each next token and when to stop.

    ``temperature == 0`` means greedy. ``seed`` makes sampling reproducible for the request regardless of
    which other requests share its batch.

    Raises
    ------
    InvalidRequestError
        On any out-of-range value (checked in ``__post_init__``, at the edge, never in the step loop).
    """

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 = off
    seed: int | None = None
    max_tokens: int = 256
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False
    include_stop_str_in_output: bool = False
    min_tokens: int = 0  # end-of-sequence and stop_token_ids are held back until this many tokens
    min_p: float = 0.0  # drop tokens whose probability is below min_p times the likeliest one's
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0  # over prompt and output tokens, as in HF and vLLM
    logit_bias: dict[int, float] = field(default_factory=dict)
    logprobs: int | None = None  # top log-probabilities per output token (0: the sampled token's only)
    prompt_logprobs: int | None = None  # the same for every prompt token (the first gets None)
    logprobs_mode: str = "processed_logprobs"  # or "raw_logprobs": the model's, before any processing

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        else:
            object.__setattr__(self, "stop", tuple(self.stop))
        object.__setattr__(self, "stop_token_ids", tuple(self.stop_token_ids))
        object.__setattr__(self, "logit_bias", dict(self.logit_bias))
        checks = [
            (_is_real(self.temperature) and self.temperature >= 0, "temperature", "must be a finite number >= 0"),
            (_is_real(self.top_p) and 0 < self.top_p <= 1, "top_p", "must be in (0, 1]"),
            (_is_int(self.top_k) and 0 <= self.top_k <= INT32_MAX, "top_k",
             f"must be an integer in [0, {INT32_MAX}] (0 disables it)"),
            (_is_int(self.max_tokens) and 1 <= self.max_tokens <= INT32_MAX, "max_tokens",
             f"must be an integer in [1, {INT32_MAX}]"),
            (all(isinstance(s, str) and s for s in self.stop), "stop", "must be non-empty strings"),
            (all(_is_int(t) and 0 <= t <= INT32_MAX for t in self.stop_token_ids), "stop_token_ids",
             "must be non-negative integers"),
            (self.seed is None or (_is_int(self.seed) and INT64_MIN <= self.seed <= INT64_MAX), "seed",
             f"must be an integer in [{INT64_MIN}, {INT64_MAX}]"),
            *self._penalty_checks(),
        ]
        for ok, name, why in checks:
            if not ok:
                raise InvalidRequestError(f"{name} {why}, got {getattr(self, name)!r}", param=name)

    def _penalty_checks(self) -> list[tuple[bool, str, str]]:
        def top_n(v: object) -> bool:
            return v is None or (_is_int(v) and 0 <= v <= MAX_LOGPROBS)

        return [
            (_is_int(self.min_tokens) and 0 <= self.min_tokens <= self.max_tokens, "min_tokens",
             "must be an integer in [0, max_tokens]"),
            (_is_real(self.min_p) and 0 <= self.min_p <= 1, "min_p", "must be in [0, 1]"),
            (_is_real(self.presence_penalty) and -2 <= self.presence_penalty <= 2, "presence_penalty",
             "must be in [-2, 2]"),
            (_is_real(self.frequency_penalty) and -2 <= self.frequency_penalty <= 2, "frequency_penalty",
             "must be in [-2, 2]"),
            (_is_real(self.repetition_penalty) and 0 < self.repetition_penalty <= 100, "repetition_penalty",
             "must be in (0, 100]"),
            (all(_is_int(t) and 0 <= t <= INT32_MAX and _is_real(b) and -100 <= b <= 100
                 for t, b in self.logit_bias.items()), "logit_bias",
             "must map token ids to biases in [-100, 100]"),
            (top_n(self.logprobs), "logprobs", f"must be an integer in [0, {MAX_LOGPROBS}] or None"),
            (top_n(self.prompt_logprobs), "prompt_logprobs", f"must be an integer in [0, {MAX_LOGPROBS}] or None"),
            (self.logprobs_mode in LOGPROBS_MODES, "logprobs_mode", f"must be one of {LOGPROBS_MODES}"),
        ]

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @property
    def has_penalties(self) -> bool:
        """Whether any logit is changed before sampling (penalties, logit_bias, a pending min_tokens)."""
        return bool(self.presence_penalty or self.frequency_penalty or self.repetition_penalty != 1.0
                    or self.logit_bias or self.min_tokens)


CONSTRAINT_KINDS = ("json_schema", "json_object", "regex", "lark", "choice")


@dataclass(frozen=True)
class Constraint:
    """What a request's output must match.

    Attributes
    ----------
    kind:
        "json_schema" (spec: dict, JSON text or bool), "json_object" (spec: None), "regex" (spec: pattern),
        "lark" (spec: grammar text) or "choice" (spec: list of strings).
    spec:
        The constraint itself.
    options:
        Compiler options, e.g. ``{"whitespace": "flexible"}`` for JSON schemas.

    Raises
    ------
    InvalidRequestError
        For an unknown kind or a spec of the wrong type.
    """

    kind: str
    spec: Any = None
    options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in CONSTRAINT_KINDS:
            raise InvalidRequestError(f"unknown constraint kind {self.kind!r}; known: {CONSTRAINT_KINDS}")
        ok = {"json_schema": isinstance(self.spec, (dict, str, bool)), "json_object": True,
              "regex": isinstance(self.spec, str), "lark": isinstance(self.spec, str),
              "choice": isinstance(self.spec, (list, tuple)) and bool(self.spec)
              and all(isinstance(c, str) for c in self.spec)}[self.kind]
        if not ok:
            raise InvalidRequestError(f"a {self.kind} constraint cannot take {type(self.spec).__name__} "
                                      f"{self.spec!r:.80}")

    def canonical(self) -> str:
        """The cache key: equal constraints (whatever their key order) give equal strings."""
        spec = self.spec
        if self.kind == "json_schema" and isinstance(spec, str):
            try:
                spec = json.loads(spec)
            except ValueError:
                pass  # the compiler reports the malformed schema with its position
        return json.dumps([self.kind, spec, self.options], sort_keys=True, separators=(",", ":"), default=str)


class RequestStatus(enum.IntEnum):
    """Ordered: a request only ever moves to a larger value, but for preemption (RUNNING -> WAITING, its KV
    given back under memory pressure), the one named move back. ``engine.sequence.Sequence.transition`` is
    the only writer and enforces it (``LEGAL_MOVES``)."""

    WAITING_FOR_GRAMMAR = 0
    WAITING = 1
    RUNNING = 2
    FINISHED_STOPPED = 3
    FINISHED_LENGTH = 4
    FINISHED_ABORTED = 5
    FINISHED_ERROR = 6

    @property
    def finished(self) -> bool:
        return self >= RequestStatus.FINISHED_STOPPED

    @property
    def finish_reason(self) -> str | None:
        return {
            RequestStatus.FINISHED_STOPPED: "stop",
            RequestStatus.FINISHED_LENGTH: "length",
            RequestStatus.FINISHED_ABORTED: "abort",
            RequestStatus.FINISHED_ERROR: "error",
        }.get(self)


@dataclass(frozen=True)
class TokenLogprob:
    """One token's log-probability and the ``top`` most likely tokens (``(token_id, logprob)``, best first)
    at its position."""

    token_id: int
    logprob: float
    top: tuple[tuple[int, float], ...] = ()


def choice_seed(seed: int, index: int) -> int:
    """The seed of choice ``index`` of an ``n > 1`` request: distinct per choice, fixed by ``seed``, in int64."""
    return (seed + index * 0x9E3779B97F4A7C15 + 2**63) % 2**64 - 2**63


_ids = itertools.count()


def new_request_id() -> str:
    return f"req-{next(_ids)}"


@dataclass(kw_only=True)
class Request:
    """One generation in flight. Owned by the engine thread; others read it only through outputs."""

    prompt_token_ids: list[int]
    sampling: SamplingParams
    request_id: str = field(default_factory=new_request_id)
    prompt: str | None = None
    constraint: Constraint | None = None  # compiled asynchronously by the engine's grammar manager
    status: RequestStatus = RequestStatus.WAITING
    output_token_ids: list[int] = field(default_factory=list)
    output_text: str = ""
    error: BaseException | None = None
    arrival_time: float = field(default_factory=time.monotonic)
    first_token_time: float | None = None
    num_cached_tokens: int = 0  # prompt tokens whose KV came from the prefix cache
    output_logprobs: list[TokenLogprob] | None = None  # one per output token, when sampling.logprobs asks
    prompt_logprobs: list[TokenLogprob | None] | None = None  # one per prompt token (the first None)

    @property
    def all_token_ids(self) -> list[int]:
        return self.prompt_token_ids + self.output_token_ids

    @property
    def num_tokens(self) -> int:
        return len(self.prompt_token_ids) + len(self.output_token_ids)


@dataclass(frozen=True, kw_only=True)
class RequestOutput:
    """What a caller sees of a request: a snapshot (streaming) or the final result."""

    request_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    text: str
    token_ids: list[int]
    finished: bool
    finish_reason: str | None  # "stop" | "length" | "abort" | "error" | None while running
    num_prompt_tokens: int
    num_output_tokens: int
    num_cached_tokens: int = 0
    error: str | None = None
    stop_reason: str | int | None = None  # the stop string or token id that ended it, if any
    # The typed error behind ``error``: the snapshot carries it to other threads (the server's), which never
    # read the engine-owned Request.
    exception: BaseException | None = field(default=None, repr=False, compare=False)
    logprobs: list[TokenLogprob] | None = None  # of the output tokens, when asked for
    prompt_logprobs: list[TokenLogprob | None] | None = None  # of the prompt tokens, when asked for
    # JSON pointers of schema keywords the constraint was compiled without (its unsupported="report" option)
    unsupported: tuple[str, ...] = ()
