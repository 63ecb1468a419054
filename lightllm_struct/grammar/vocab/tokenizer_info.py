"""TokenizerInfo: the vocabulary as raw bytes per token id, in the layouts the mask computation needs."""
from __future__ import annotations

import threading
from collections.abc import Sequence


from lightllm_struct.grammar.errors import GrammarError

_NEVER_IN_UTF8 = frozenset([0xC0, 0xC1, *range(0xF5, 0x100)])


class TokenizerInfo:
    """A vocabulary for the grammar engine.

    Attributes
    ----------
    vocab_size:
        Number of token ids (bitmask width is ``ceil(vocab_size / 32)`` words).
    eos_token_ids:
        Ids that end generation; allowed exactly when the output is a complete sentence.
    special_token_ids:
        Ids that are never text (control tokens); never allowed by a grammar, EOS apart.
    """

    def __init__(self, vocab: Sequence[bytes], *, eos_token_ids: Sequence[int],
                 special_token_ids: Sequence[int] = ()) -> None:
        self.vocab: list[bytes] = [bytes(v) for v in vocab]
        self.vocab_size = len(self.vocab)
        self.num_words = (self.vocab_size + 31) // 32
        self.eos_token_ids = tuple(sorted({int(t) for t in eos_token_ids}))
        self.special_token_ids = tuple(sorted({int(t) for t in special_token_ids} - set(self.eos_token_ids)))
        for t in self.eos_token_ids + self.special_token_ids:
            if not 0 <= t < self.vocab_size:
                raise GrammarError(f"token id {t} outside the vocabulary of {self.vocab_size}")
        non_text = set(self.eos_token_ids) | set(self.special_token_ids)
        self.text_ids = [i for i, v in enumerate(self.vocab) if v and i not in non_text]
        self.max_token_len = max((len(self.vocab[i]) for i in self.text_ids), default=0)
        self.token_of_bytes: dict[bytes, int] = {}
        for i in self.text_ids:  # several ids may share bytes: keep the smallest
            self.token_of_bytes.setdefault(self.vocab[i], i)
        # Budget-aware masks bound a finish of d bytes by d tokens, spelling it byte by byte: they measure
        # finishes through these bytes only (``grammar/finish.py``). Bytes that no UTF-8 text holds (C0,
        # C1, F5-FF) never occur in an output, so their absence is not counted.
        self.single_bytes = tuple(b for b in range(256) if bytes([b]) in self.token_of_bytes)
        self.missing_single_bytes = tuple(b for b in range(256) if b not in _NEVER_IN_UTF8
                                          and bytes([b]) not in self.token_of_bytes)
        self._lock = threading.Lock()
        self._trie = None
        self._matrix = None
        self._shared: dict = {}
        self._shared_lock = threading.RLock()  # factories may build the trie, which takes self._lock

    @property
    def every_byte_a_token(self) -> bool:
        """Whether each byte an output can hold is one token (else finishes avoid the missing ones)."""
        return not self.missing_single_bytes

    def shared(self, key, factory):
        """A per-vocabulary object (caches shared by every grammar compiled for this vocabulary)."""
        obj = self._shared.get(key)
        if obj is None:
            with self._shared_lock:
                obj = self._shared.get(key)
                if obj is None:
                    obj = self._shared[key] = factory()
        return obj

    @property
    def trie(self):
        """The token trie (made on first use, once per vocabulary; kept on disk between processes)."""
        if self._trie is None:
            from lightllm_struct.grammar.vocab.trie_cache import cached_trie

            with self._lock:
                if self._trie is None:
                    self._trie = cached_trie(self.vocab, self.text_ids)
        return self._trie

    @property
    def matrix(self):
        """The length-sorted padded byte matrix (built on first use, once per vocabulary)."""
        if self._matrix is None:
            from lightllm_struct.grammar.masks.scan_matrix import TokenMatrix

            with self._lock:
                if self._matrix is None:
                    self._matrix = TokenMatrix(self.vocab, self.text_ids)
        return self._matrix

    @classmethod
    def from_vocab(cls, vocab: Sequence[bytes], *, eos_token_ids: Sequence[int],
                   special_token_ids: Sequence[int] = ()) -> "TokenizerInfo":
        """Build from raw bytes per token id.

        Parameters
        ----------
        vocab:
            ``vocab[i]`` is the exact byte string token ``i`` decodes to.
        eos_token_ids:
            End-of-sequence ids.
        special_token_ids:
            Control tokens that are never allowed inside constrained output.

        Raises
        ------
        GrammarError
            An EOS or special id lies outside the vocabulary.
        """
        return cls(vocab, eos_token_ids=eos_token_ids, special_token_ids=special_token_ids)

    @classmethod
    def from_huggingface(cls, tokenizer) -> "TokenizerInfo":
        """Build from a Hugging Face tokenizer (byte-level BPE or SentencePiece vocabularies)."""
        from lightllm_struct.grammar.vocab.huggingface import vocab_from_huggingface

        vocab, eos_ids, special_ids = vocab_from_huggingface(tokenizer)
        return cls(vocab, eos_token_ids=eos_ids, special_token_ids=special_ids)
