"""The batch's mask rows in one call: each distinct mask computed once, each row written only when it changed.

A server sees many requests of one schema (the same tool list for every client of an agent), so in a step
many rows share a grammar and a state and thus a mask. Per request, a fill costs a mask-cache lookup plus a
16 KB row copy (128k vocabulary); for a batch of 256 that is 4 MB of copies a step. Here:

* rows are grouped by ``Matcher.mask_state()`` plus their budget: one lookup (or one computation, the first
  time a state is seen) per group;
* rows whose buffer already holds the very same cached mask array (the previous step wrote it: the request
  stayed in its state, or the row's request changed but the state is the same) are not rewritten;
* each distinct mask is copied into all its rows with one numpy assignment.

The rows are bit for bit what each request's own ``fill_next_token_bitmask`` writes
(``tests/grammar/test_batch_fill.py``). Matchers of another grammar engine (any ``fill_next_token_bitmask``
without ``next_token_words``) are filled the ordinary way.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from lightllm_struct.grammar.deadline import Deadline, compiling_within


@dataclass
class BatchFill:
    """What :meth:`BatchMaskFiller.fill` did: the rows, the rows whose mask failed, the slow distinct masks."""

    rows: torch.Tensor
    failed: list[tuple[int, BaseException]] = field(default_factory=list)  # such rows allow every token
    slow: list[tuple[int, float]] = field(default_factory=list)  # (first row of the group, seconds)


class BatchMaskFiller:
    """Fills the packed int32 ``[batch, ceil(V / 32)]`` bitmask of a step; owns the buffer it returns.

    Parameters
    ----------
    num_words:
        Words a row: ``ceil(V / 32)`` for logits of width V.
    pin_memory:
        Keep the buffer in page-locked memory (its copy to the GPU does not block the host).
    The returned tensor is a view of one buffer reused every step: use it before the next call and never
    write it (the filler remembers what each row holds; :meth:`forget` after writing it anyway).
    """

    def __init__(self, num_words: int, *, pin_memory: bool = False) -> None:
        self.num_words, self._pin = num_words, pin_memory
        self._all = np.full(num_words, -1, dtype=np.int32)
        self._buffer = torch.empty(0, num_words, dtype=torch.int32)
        self._view = self._buffer.numpy()
        self._held: list[object] = []  # per row: the array whose words it holds (None: unknown)

    def forget(self) -> None:
        """Assume nothing about the buffer's rows (they were written from outside)."""
        self._held = [None] * len(self._held)

    def fill(self, matchers: Sequence, budgets: Sequence[int | None] | None = None, *,
             slow_s: float = float("inf")) -> BatchFill:
        """Rows ``0 .. len(matchers) - 1``: each matcher's next-token mask, all ones where it is None.

        Parameters
        ----------
        matchers:
            One matcher (or None for an unconstrained row) a row.
        budgets:
            Each row's ``max_tokens_left`` (None: no budget check), as ``fill_next_token_bitmask`` takes it.
        slow_s:
            A distinct mask that takes longer than this is reported in ``BatchFill.slow``.

        Returns
        -------
        BatchFill
            A row whose mask raised allows every token and is listed in ``failed`` with the exception.
        """
        n = len(matchers)
        budgets = budgets if budgets is not None else [None] * n
        self._reserve(n)
        out = BatchFill(self._buffer[:n])
        held, view, free, clock = self._held, self._view, self._all, time.perf_counter
        words_of: dict[tuple, np.ndarray] = {}  # (state, budget) -> its mask: one lookup or computation a group
        last = clock()
        for i, matcher in enumerate(matchers):
            if matcher is None:
                words = free
            elif not hasattr(matcher, "mask_state"):  # another engine's matcher: its own fill, into its row
                self._foreign(out, i, matcher, budgets[i], slow_s)
                continue
            else:
                key = (matcher.mask_state(), budgets[i])
                words = words_of.get(key)
                if words is None:  # inline, not a helper call: this loop runs for every row of every step
                    try:
                        # the budget interrupts a mask that would run past it (lazily made lexer rows
                        # check it), instead of letting the whole step wait for it to finish
                        with compiling_within(Deadline(slow_s if slow_s != float("inf") else None)):
                            words = matcher.next_token_words(max_tokens_left=budgets[i])
                    except Exception as exc:  # noqa: BLE001 -- that request's grammar failed, not the batch
                        out.failed.append((i, exc))
                        words = free
                    # One clock read a distinct mask: the time since the last one also holds the shared
                    # rows in between, microseconds each, against a budget of (tens of) milliseconds.
                    now = clock()
                    if now - last > slow_s:
                        out.slow.append((i, now - last))
                    last = now
                    words_of[key] = words
            if held[i] is not words:  # copied at once: the fastest order (the rows' masks are in cache)
                np.copyto(view[i], words)
                held[i] = words
        return out

    # -- internals --------------------------------------------------------------------------------

    def _reserve(self, n: int) -> None:
        if n > len(self._buffer):
            rows = max(n, 2 * len(self._buffer))
            self._buffer = torch.empty(rows, self.num_words, dtype=torch.int32, pin_memory=self._pin)
            self._view = self._buffer.numpy()
            self._held = [None] * rows

    def _foreign(self, out: BatchFill, i: int, matcher, budget: int | None, slow_s: float) -> None:
        self._held[i] = None
        start = time.perf_counter()
        try:
            matcher.fill_next_token_bitmask(self._buffer, index=i, max_tokens_left=budget)
        except Exception as exc:  # noqa: BLE001 -- that request's grammar failed, not the batch
            self._view[i] = -1
            out.failed.append((i, exc))
            return
        spent = time.perf_counter() - start
        if spent > slow_s:
            out.slow.append((i, spent))
