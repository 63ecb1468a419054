"""The engine's private state of one request, beside the public :class:`Request` it wraps."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lightllm_struct.engine.tokenizer import IncrementalDetokenizer
from lightllm_struct.request import Request, RequestStatus


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
    matcher: Any = None  # grammar matcher, when the request is constrained
    output_bound: int | None = None  # hard bound on output tokens a grammar guarantees, if known
    num_emitted_chars: int = 0  # of output_text, already safe to show (past any stop-string prefix)
    stop_reason: str | int | None = None
    admitted_at: int = 0  # admission order: the newest is preempted first

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

    def finish(self, status: RequestStatus, *, error: BaseException | None = None) -> None:
        assert status.finished and not self.finished, "a request finishes once"
        self.req.status = status
        if error is not None:
            self.req.error = error
