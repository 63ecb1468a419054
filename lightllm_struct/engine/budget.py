"""A constrained request's token budget: what reaches its matcher each step, and the up-front refusal.

The budget of a request is the smaller of what ``max_tokens`` leaves and what the model's context leaves
after the prompt and the output so far. Budget-aware masks (``grammar/masks/budget.py``) keep the
shortest finish within it, so an answer ends complete by its last token; a budget that no answer can
fit is refused before the request runs.
"""
from __future__ import annotations

from typing import Any

from lightllm_struct.engine.sequence import Sequence
from lightllm_struct.errors import BudgetTooSmallError


def tokens_left(seq: Sequence, max_model_len: int | None) -> int:
    """Tokens ``seq`` may still produce, the next one included."""
    left = seq.req.sampling.max_tokens - seq.num_output
    if max_model_len is not None:
        left = min(left, max_model_len - seq.num_tokens)
    return left


def budget_for_mask(seq: Sequence, max_model_len: int | None) -> int:
    """The budget to pass to ``seq``'s mask: at every step, however far, because a single token can push
    the shortest finish out by any amount (a ``{`` opening an object of long required properties); where
    it drops nothing the check is a cached lookup (``grammar/masks/budget.py``)."""
    return tokens_left(seq, max_model_len)


def check_budget(seq: Sequence, grammar: Any, max_model_len: int | None) -> None:
    """Refuse ``seq`` if even the most optimistic tokenization of its shortest answer exceeds its budget.

    "Impossible" is exact: a budget below ``ceil(shortest answer bytes / longest token bytes)`` cannot hold
    any complete answer, whatever the tokens. Budgets from there up to the shortest answer's byte count
    may or may not fit (that depends on which long tokens spell it); from the byte count up, finishing in
    time is guaranteed (every byte is a token).

    Raises
    ------
    BudgetTooSmallError
        With ``param`` "max_tokens" (or "prompt" when the model's context is what is short).
    """
    min_tokens = getattr(grammar, "min_output_tokens", None)
    if min_tokens is None:
        return
    need = min_tokens()
    by_tokens = seq.req.sampling.max_tokens
    by_context = None if max_model_len is None else max_model_len - seq.num_tokens
    budget = by_tokens if by_context is None else min(by_tokens, by_context)
    if need <= budget:
        return
    shortest = int(grammar.distances.start)
    if by_context is not None and by_context < by_tokens:
        raise BudgetTooSmallError(
            f"the prompt leaves {by_context} tokens of the model's context, but every answer this constraint "
            f"allows takes at least {need} tokens (its shortest is {shortest} bytes): shorten the prompt",
            min_tokens=need, param="prompt")
    raise BudgetTooSmallError(
        f"max_tokens={by_tokens} is too small for this constraint: every answer it allows takes at least "
        f"{need} tokens (its shortest is {shortest} bytes); set max_tokens to at least {max(need, shortest)} "
        f"to be sure the answer completes", min_tokens=need)
