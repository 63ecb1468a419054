"""The engine's private state of one request, beside the public :class:`Request` it wraps."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lightllm_struct.engine.matcher_like import MatcherLike
from lightllm_struct.engine.tokenizer import IncrementalDetokenizer
from lightllm_struct.request import Request, RequestStatus

_FINISHED = frozenset(s for s in RequestStatus if s.finished)
# Every move a request's status may make. All go forward (the enum is ordered) but one: preemption, RUNNING ->
# WAITING, when the scheduler takes a running request's KV back to make room.
LEGAL_MOVES: dict[RequestStatus, frozenset[RequestStatus]] = {
    RequestStatus.WAITING_FOR_GRAMMAR: frozenset({RequestStatus.WAITING}) | _FINISHED,
    RequestStatus.WAITING: frozenset({RequestStatus.RUNNING}) | _FINISHED,
    RequestStatus.RUNNING: frozenset({RequestStatus.WAITING}) | _FINISHED,  # WAITING: preemption
    **{s: frozenset() for s in _FINISHED},
}
# Where a request starts: waiting for its grammar to compile, or (free, or its grammar cached) for a slot.
INITIAL = frozenset({RequestStatus.WAITING_FOR_GRAMMAR, RequestStatus.WAITING})


@dataclass(eq=False)
class Sequence:
    """A request as the scheduler, model runner and output processor see it.

    Invariant: the KV of ``all_token_ids[:num_computed]`` is in the slots of row ``row`` of the
    request-to-slots table; the first ``num_cached`` of those slots belong to the prefix cache (locked
    through ``cache_node``), the rest to this sequence.
    """

    req: Request
    seed: int
    detokenizer: IncrementalDetokenizer
    row: int = -1
    num_computed: int = 0
    num_cached: int = 0
    cache_node: Any = None
    matcher: MatcherLike | None = None  # when the request is constrained
    output_bound: int | None = None  # hard bound on output tokens a grammar guarantees, if known
    num_emitted_chars: int = 0  # of output_text, already safe to show (past any stop-string prefix)
    stop_reason: str | int | None = None
    admitted_at: int = 0  # admission order: the newest is preempted first
    placed: bool = False  # the engine gave the request its first status (Sequence.place)
    num_inflight: int = 0  # 1 while its sampled token is still on the device (overlapped steps)

    @property
    def request_id(self) -> str:
        return self.req.request_id

    @property
    def status(self) -> RequestStatus:
        return self.req.status

    @property
    def num_tokens(self) -> int:
        return self.req.num_tokens

    @property
    def all_token_ids(self) -> list[int]:
        return self.req.all_token_ids

    def token_ids(self, start: int, n: int) -> list[int]:
        """``all_token_ids[start:start + n]`` without building the whole list (a decode step reads one token)."""
        prompt, output = self.req.prompt_token_ids, self.req.output_token_ids
        if start >= len(prompt):
            return output[start - len(prompt):start - len(prompt) + n]
        if start + n <= len(prompt):
            return prompt[start:start + n]
        return prompt[start:] + output[:start + n - len(prompt)]

    @property
    def num_output(self) -> int:
        return len(self.req.output_token_ids)

    @property
    def finished(self) -> bool:
        return self.req.status.finished

    def place(self, status: RequestStatus) -> None:
        """Give the new request its first status, once: WAITING_FOR_GRAMMAR or WAITING."""
        assert not self.placed and status in INITIAL, f"a request starts once, in one of {sorted(INITIAL)}"
        self.req.status, self.placed = status, True

    def transition(self, status: RequestStatus) -> None:
        """Move to ``status``: the only writer of a request's status after :meth:`place`, along LEGAL_MOVES."""
        assert status in LEGAL_MOVES[self.req.status], \
            f"illegal status move {self.req.status.name} -> {status.name} of {self.request_id}"
        self.req.status = status

    def finish(self, status: RequestStatus, *, error: BaseException | None = None) -> None:
        assert status.finished and not self.finished, "a request finishes once"
        self.transition(status)
        if error is not None:
            self.req.error = error
