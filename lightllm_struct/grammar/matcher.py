"""Matcher: one generation's position in a compiled grammar."""
from __future__ import annotations

import numpy as np
import torch

from lightllm_struct.grammar.compiled import CompiledGrammar
from lightllm_struct.grammar.errors import InvalidTokenError, MatcherStateError

_MAX_FORCED_BYTES = 4096


class Matcher:
    """Tracks accepted tokens, answers which tokens may come next, and rolls back.

    Cheap to create: all heavy state lives in the shared :class:`CompiledGrammar`. Not thread-safe
    itself (one matcher belongs to one request); many matchers of one grammar may run in parallel.

    Parameters
    ----------
    grammar:
        The compiled grammar.
    """

    def __init__(self, grammar: CompiledGrammar) -> None:
        self.grammar = grammar
        self._tok = grammar.tokenizer
        self._vocab, self._vocab_size = self._tok.vocab, self._tok.vocab_size  # per-token hot path
        self._eos = frozenset(self._tok.eos_token_ids)
        self._special = frozenset(self._tok.special_token_ids)
        self._initial = grammar.initial_config()
        self._history: list[tuple] = [(self._initial, False)]  # (config, terminated) per accepted token
        self._view_of = self._view = None

    # -- state ------------------------------------------------------------------------------------
    def is_terminated(self) -> bool:
        """True after EOS, or when the output is complete and nothing but EOS can follow."""
        config, terminated = self._history[-1]
        if terminated:
            return True
        return not self.grammar.can_continue(config) and self.grammar.is_complete(config)

    def is_complete(self) -> bool:
        """Whether the output so far is a whole sentence (EOS would be accepted)."""
        config, terminated = self._history[-1]
        return terminated or self.grammar.is_complete(config)

    def shortest_finish(self) -> float:
        """Fewest bytes (so at most that many tokens) after which the output is complete; 0 if it is."""
        config, terminated = self._history[-1]
        return 0.0 if terminated else self.grammar.distances.of(config)

    @property
    def num_accepted_tokens(self) -> int:
        return len(self._history) - 1

    def reset(self) -> None:
        """Back to the start of the grammar."""
        del self._history[1:]

    def rollback(self, n_tokens: int) -> None:
        """Undo the last ``n_tokens`` accepted tokens.

        Raises
        ------
        MatcherStateError
            ``n_tokens`` is negative or more than were accepted.
        """
        if not 0 <= n_tokens < len(self._history):
            raise MatcherStateError(f"cannot roll back {n_tokens} tokens; {len(self._history) - 1} accepted")
        if n_tokens:
            del self._history[-n_tokens:]

    # -- advancing --------------------------------------------------------------------------------
    def accept_token(self, token_id: int) -> bool:
        """Advance by one token if the grammar allows it.

        Returns
        -------
        bool
            False (and no change) when the token is not allowed here.

        Raises
        ------
        InvalidTokenError
            ``token_id`` is outside the vocabulary.
        """
        if not 0 <= token_id < self._vocab_size:
            raise InvalidTokenError(f"token id {token_id} outside the vocabulary of {self._vocab_size}")
        config, terminated = self._history[-1]
        if token_id in self._eos:
            if terminated or self.grammar.is_complete(config):
                self._history.append((config, True))
                return True
            return False
        if terminated or token_id in self._special:
            return False
        after = self.grammar.feed_bytes(config, self._vocab[token_id])
        if after is None:
            return False
        self._history.append((after, False))
        return True

    def accept_bytes(self, data: bytes) -> bool:
        """Advance by raw bytes as one step (rollback counts it as one token); False if not allowed."""
        config, terminated = self._history[-1]
        after = None if terminated else self.grammar.feed_bytes(config, data)
        if after is None:
            return False
        self._history.append((after, False))
        return True

    # -- masks ------------------------------------------------------------------------------------
    def fill_next_token_bitmask(self, bitmask: torch.Tensor, index: int = 0, *,
                                max_tokens_left: int | None = None) -> None:
        """Write the allowed next tokens into row ``index`` of a packed int32 bitmask.

        After termination only EOS is allowed, so a row stays samplable.

        Parameters
        ----------
        bitmask:
            int32 ``[batch, ceil(vocab / 32)]`` (or one row).
        index:
            The row to write.
        max_tokens_left:
            The request's remaining token budget, this token included. When given, tokens after which
            the shortest finish (in bytes, each byte a token) exceeds ``max_tokens_left - 1`` are left
            out, so that followed every step the output is a whole sentence by the last token.
        """
        words = self.next_token_words(max_tokens_left=max_tokens_left)
        if bitmask is self._view_of:  # engines refill one batch tensor every step: keep its numpy view
            target = self._view
        else:
            try:
                target = bitmask.numpy()  # CPU: a numpy copy is cheaper than torch indexing + copy_
            except TypeError:  # a device tensor
                row = bitmask[index] if bitmask.dim() == 2 else bitmask
                row.copy_(torch.from_numpy(words))
                return
            self._view_of, self._view = bitmask, target
        np.copyto(target[index] if target.ndim == 2 else target, words)

    def next_token_words(self, *, max_tokens_left: int | None = None) -> np.ndarray:
        """The packed int32 mask row of the allowed next tokens (``fill_next_token_bitmask``'s row).

        Usually a cached array shared with every matcher in the same state: read it, never write it.
        """
        config, terminated = self._history[-1]
        if terminated:
            return self.grammar.masker.eos_mask
        words = self.grammar.masker.mask(config)
        if max_tokens_left is not None:
            words = self.grammar.budget_masks.restrict(config, words, max_tokens_left)
        return words

    def mask_state(self) -> tuple:
        """A key equal for matchers whose next-token masks are equal without a budget (cheap: identities).

        Two matchers of one grammar with the same stack object, lexer and lexer state have the same mask
        (``CompiledGrammar`` interns stack cells, so equal stacks are mostly one object; where they are not,
        the masks are still shared through the grammar's mask cache). Valid while both are unchanged.
        """
        (stack, lexer, q), terminated = self._history[-1]
        if terminated:
            return (id(self.grammar), True)
        return (id(self.grammar), id(stack), id(lexer), q)

    def allowed_token_ids(self, *, max_tokens_left: int | None = None) -> list[int]:
        """The allowed next tokens as a list (tests and debugging; the bitmask is the fast path)."""
        from lightllm_struct.grammar.bitmask import allocate_token_bitmask, unpack_bitmask

        mask = allocate_token_bitmask(1, self._tok.vocab_size)
        self.fill_next_token_bitmask(mask, 0, max_tokens_left=max_tokens_left)
        return unpack_bitmask(mask[0], self._tok.vocab_size).nonzero()[0].tolist()

    def forced_tokens(self) -> list[int]:
        """Tokens the grammar forces next (jump-forward decoding), possibly empty.

        When exactly one byte string can come next (no choice, EOS not allowed), that string is
        tokenized greedily with the longest vocabulary tokens that lie entirely inside it; each returned
        token is accepted in sequence by this matcher. The matcher itself is not advanced.
        """
        config, terminated = self._history[-1]
        if terminated:
            return []
        forced = bytearray()
        while len(forced) < _MAX_FORCED_BYTES:
            nxt = self.grammar.next_bytes(config)
            if len(nxt) != 1 or self.grammar.is_complete(config):
                break
            byte = nxt.pop()
            forced.append(byte)
            config = self.grammar.feed_bytes(config, bytes([byte]))
        return self._tokenize_forced(bytes(forced))

    def _tokenize_forced(self, data: bytes) -> list[int]:
        out: list[int] = []
        config = self._history[-1][0]
        pos = 0
        lookup = self._tok.token_of_bytes
        while pos < len(data):
            for end in range(min(len(data), pos + self._tok.max_token_len), pos, -1):
                tid = lookup.get(data[pos:end])
                if tid is not None and tid not in self._special:
                    break
            else:
                break
            config = self.grammar.feed_bytes(config, self._tok.vocab[tid])
            if config is None:  # cannot happen for forced bytes; stay safe rather than mislead
                break
            out.append(tid)
            pos = end
        return out
