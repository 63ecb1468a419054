"""Llama 3 (128k) and Qwen 2.5/3 (151k) vocabularies from the ``quicktok-v1`` package, without a model hub.

quicktok ships the exact byte-level BPE tables of these tokenizers, so tests and benchmarks can run the
grammar engine on real large vocabularies and tokenize text (traces) the way those models do.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from lightllm_struct.errors import LightLLMStructError
from lightllm_struct.grammar.vocab.huggingface import KNOWN_EOS_MARKERS

__all__ = ["QUICKTOK_VOCABS", "QuicktokVocab", "QuicktokUnavailable", "load_quicktok_vocab"]

# Friendly name -> quicktok encoding name.
QUICKTOK_VOCABS = {"llama3": "llama3", "qwen3": "qwen3", "qwen": "qwen3"}


class QuicktokUnavailable(LightLLMStructError):
    """quicktok-v1 is not installed, or does not know the requested encoding."""

    http_status = 500
    error_type = "server_error"


@dataclass(frozen=True, eq=False)
class QuicktokVocab:
    """One vocabulary: raw bytes per token id, end/special ids, and the encoder that produced them.

    Attributes
    ----------
    name : str
        The quicktok encoding name (``"llama3"`` or ``"qwen3"``).
    vocab : list[bytes]
        ``vocab[i]`` is the bytes token ``i`` stands for; special tokens carry their content.
    eos_token_ids : list[int]
        The encoding's end-of-text token first, then the chat end-of-turn markers it has.
    special_token_ids : list[int]
        Control tokens, never text.
    """

    name: str
    vocab: list[bytes]
    eos_token_ids: list[int]
    special_token_ids: list[int]
    encoder: Any

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` as the model's tokenizer splits it; special-token strings stay text.

        Qwen's tokenizer NFC-normalizes first, so its ids may spell a normalized form of ``text``.
        """
        return list(self.encoder.encode_ordinary(text))

    def decode_bytes(self, ids: list[int]) -> bytes:
        """Exact bytes of a token sequence (lossless, even if it splits a UTF-8 character)."""
        return b"".join(self.vocab[i] for i in ids)


@lru_cache(maxsize=4)
def load_quicktok_vocab(name: str) -> QuicktokVocab:
    """Load (once per process) a vocabulary shipped with quicktok-v1.

    Parameters
    ----------
    name : str
        ``"llama3"`` (128,256 tokens) or ``"qwen3"`` / ``"qwen"`` (151,669 tokens).

    Returns
    -------
    QuicktokVocab

    Raises
    ------
    QuicktokUnavailable
        If quicktok-v1 is not installed or ``name`` is not one of its bundled encodings.
    """
    if name not in QUICKTOK_VOCABS:
        raise QuicktokUnavailable(f"unknown vocabulary {name!r}; choose one of {sorted(QUICKTOK_VOCABS)}")
    try:
        import quicktok
    except ImportError as exc:
        raise QuicktokUnavailable("quicktok-v1 is not installed (pip install quicktok-v1)") from exc
    encoder = quicktok.get_encoding(QUICKTOK_VOCABS[name])
    # token_byte_values() is sorted by bytes, not by id, so ask id by id; an unused id stays b"".
    vocab = [_token_bytes(encoder, tid) for tid in range(encoder.n_vocab)]
    special = [tid for tid in range(encoder.n_vocab) if encoder.is_special_token(tid) or not vocab[tid]]
    by_text = {vocab[tid]: tid for tid in special}
    eos = [encoder.eot_token]
    eos += [by_text[m.encode()] for m in KNOWN_EOS_MARKERS if m.encode() in by_text and by_text[m.encode()] not in eos]
    return QuicktokVocab(QUICKTOK_VOCABS[name], vocab, eos, special, encoder)


def _token_bytes(encoder: Any, tid: int) -> bytes:
    try:
        return encoder.decode_single_token_bytes(tid)
    except KeyError:
        return b""
