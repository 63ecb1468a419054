"""How much prompt prefill one step may do beside decoding requests: a bound on the chunk's cost, not its tokens.

Every decoding request's next token waits for the whole step, so a step that also prefills a chunk of a long
prompt delays every stream by that chunk's time (Sarathi-Serve's "generation stalls"). The step's token budget
(``max_num_batched_tokens``) does not bound that time: on a 2-core CPU with the default model a 2,048-token
chunk took 29 s at context 0 and 55 s at context 4,096, because a chunk's attention reads the whole context
already computed. So while requests decode, a step's prefill chunks share a smaller budget in token-equivalents,
where a chunk of ``n`` tokens after ``c`` computed ones costs ``n * (1 + (c + n) / attention_context)``:
``attention_context`` is the context at which one token's attention costs about what the rest of its layers do
(the torch backend's masked SDPA computes the whole ``n x (c + n)`` rectangle, hence ``c + n``). Later chunks of a
long prompt get fewer tokens and each step's prefill time stays about constant. With nothing decoding, prefill
runs at the full step budget (no stream waits). vLLM's ``long_prefill_token_threshold`` caps a long prompt's chunk
in tokens only; this cap also follows the context.
"""
from __future__ import annotations

import math

from lightllm_struct.config import EngineConfig

# CPU default budget (token-equivalents a step beside decodes): about 0.4 s of prefill per step for the default
# model on one torch thread of the 2-core dev box (2026-12-04, benchmarks/RESULTS.md "Long prompts beside
# streams"). On CUDA the default is no bound: a 2,048-token chunk of a small model takes milliseconds there, and
# the step's token budget is what keeps the GPU busy, so shrinking chunks would only slow prefill down.
_CPU_BUDGET = 256


class PrefillBudget:
    """The per-step prefill bound beside decodes; ``budget`` None = unbounded (the step's token budget only).

    Parameters
    ----------
    budget:
        Token-equivalents of prefill one step may do while some request decodes (see the module docstring).
    attention_context:
        The context length at which a token's attention weighs as much as the rest of its cost.
    """

    def __init__(self, *, budget: int | None, attention_context: int = 2048) -> None:
        self.budget, self.attention_context = budget, attention_context

    @classmethod
    def from_config(cls, config: EngineConfig, *, device_type: str) -> "PrefillBudget":
        """The bound ``config`` asks for on ``device_type`` ("cpu", "cuda"); unbounded without chunked prefill
        (a prompt that may not be split must not wait for an allowance it can never get)."""
        budget = config.prefill_budget_while_decoding
        if budget is None:
            budget = _CPU_BUDGET if device_type == "cpu" else None
        if not config.enable_chunked_prefill:
            budget = None
        return cls(budget=budget, attention_context=config.prefill_attention_context)

    def cost(self, n: int, context: int) -> float:
        """Token-equivalents of computing ``n`` prompt tokens after ``context`` computed ones."""
        return n * (1 + (context + n) / self.attention_context)

    def for_step(self, *, decoding: bool) -> "StepAllowance":
        """A fresh allowance for one step; unbounded when nothing decodes in it or no budget is set."""
        return StepAllowance(self, math.inf if self.budget is None or not decoding else float(self.budget))


class StepAllowance:
    """What is left of one step's prefill budget; the first chunk of a step always gets at least one token, so a
    prompt whose context makes a single token cost more than the budget still progresses."""

    def __init__(self, policy: PrefillBudget, left: float) -> None:
        self.policy, self.left, self.spent_any = policy, left, False

    @property
    def bounded(self) -> bool:
        return self.left != math.inf

    def limit(self, todo: int, context: int) -> int:
        """The most of ``todo`` prompt tokens (after ``context`` computed) that fit what is left (not spent yet)."""
        if not self.bounded or todo <= 0:
            return max(todo, 0)
        s = self.policy.attention_context
        # n^2 / s + n (1 + c / s) <= left: the positive root, then corrected for float rounding.
        b = 1 + context / s
        n = min(todo, int((-b + math.sqrt(b * b + 4 * self.left / s)) * s / 2))
        while n > 0 and self.policy.cost(n, context) > self.left:
            n -= 1
        while n < todo and self.policy.cost(n + 1, context) <= self.left:
            n += 1
        return max(n, 1) if not self.spent_any else n

    def hold(self, fraction: float) -> float:
        """Set ``fraction`` of what is left aside (``release`` gives it back); returns the amount held."""
        if not self.bounded:
            return 0.0
        held = self.left * fraction
        self.left -= held
        return held

    def release(self, held: float) -> None:
        self.left += held

    def spend(self, n: int, context: int) -> None:
        if n > 0:
            self.spent_any = True
            if self.bounded:
                self.left = max(0.0, self.left - self.policy.cost(n, context))
