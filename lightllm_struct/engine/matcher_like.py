"""The seam between the engine and a grammar engine: what the engine calls on a request's matcher.

``grammar.Matcher`` implements it; so can an adapter of another grammar engine (xgrammar, llguidance,
outlines-core: ``benchmarks/grammar_engines.py``). A file of its own because ``Sequence`` (typed with it) and
``GrammarManager`` (which builds matchers) both need it, and the manager imports ``Sequence``.
"""
from __future__ import annotations

from typing import Protocol

import torch

from lightllm_struct.errors import LightLLMStructError


class MatcherLike(Protocol):
    """One request's position in its grammar."""

    def accept_token(self, token_id: int) -> bool:
        """Advance by ``token_id``; False (and no change) if the grammar does not allow it here."""

    def fill_next_token_bitmask(self, bitmask: torch.Tensor, index: int = 0, *,
                                max_tokens_left: int | None = None) -> None:
        """Write row ``index`` of a packed int32 bitmask: the tokens allowed next (within the budget)."""

    def forced_tokens(self) -> list[int]:
        """Tokens the grammar forces next (jump-forward), possibly none."""

    def is_terminated(self) -> bool:
        """The grammar accepted EOS: only EOS may follow."""

    def is_complete(self) -> bool:
        """What was accepted so far is a whole sentence of the grammar."""

    def shortest_finish(self) -> float:
        """Fewest bytes after which the output is complete (0 if it is): when budget-aware masks engage."""


class SampledTokenRejected(LightLLMStructError):
    """The matcher refused the token the engine sampled under its own mask: the engine's fault, never the
    user's (HTTP 500). It fails that request only."""

    http_status = 500
    error_type = "internal_error"
    code = "sampled_token_rejected"
