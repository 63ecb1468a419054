"""Raw bytes of every token of a Hugging Face tokenizer, the form the grammar engine works on.

The grammar engine matches bytes, so each token id must map to the exact bytes it adds to the output.
Tokenizers store tokens in one of a few encodings of those bytes:

- byte-level BPE (GPT-2, Llama 3, Qwen, SmolLM): every byte is shown as one printable character of the
  GPT-2 ``bytes_to_unicode`` table (``Ġ`` = space, ``Ċ`` = newline);
- SentencePiece-style (Llama 2, Mistral, Gemma): text pieces with ``▁`` for a space, and ``<0xNN>``
  byte-fallback tokens for bytes outside the pieces;
- added tokens (chat markers, tool tags): their content is literal text; the special ones are control
  tokens that never stand for text and are flagged as such.
"""
from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

from lightllm_struct.errors import LightLLMStructError

__all__ = ["UnsupportedTokenizer", "bytes_to_unicode", "vocab_from_huggingface"]

SPIECE_SPACE = "\u2581"  # ▁
_BYTE_FALLBACK = re.compile(r"<0x([0-9A-Fa-f]{2})>")
# End-of-turn / end-of-text markers of common chat models. A generation ends at any of them, so the
# grammar engine must allow all of them where the grammar may end, not only the tokenizer's `eos_token`.
KNOWN_EOS_MARKERS = (
    "</s>", "<|endoftext|>", "<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<|eom_id|>",
    "<eos>", "<end_of_turn>", "<|end|>", "<|return|>",
)


class UnsupportedTokenizer(LightLLMStructError):
    """A tokenizer whose token-to-bytes mapping we cannot derive exactly (e.g. WordPiece)."""

    http_status = 500
    error_type = "server_error"


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from each byte to the printable character that byte-level BPE stores it as.

    Returns
    -------
    dict[int, str]
        256 entries; printable Latin-1 bytes map to themselves, the rest to U+0100 upwards.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


@lru_cache(maxsize=1)
def _unicode_to_bytes() -> dict[str, int]:
    return {char: byte for byte, char in bytes_to_unicode().items()}


def vocab_from_huggingface(tokenizer: Any) -> tuple[list[bytes], list[int], list[int]]:
    """Raw bytes of every token id, the end-of-sequence ids and the special (non-text) ids.

    Parameters
    ----------
    tokenizer
        A ``transformers`` tokenizer (fast, or slow byte-level / SentencePiece) or a raw
        ``tokenizers.Tokenizer``.

    Returns
    -------
    vocab : list[bytes]
        ``vocab[i]`` is what token ``i`` adds to the decoded byte stream; its length is the tokenizer's
        full size including added tokens. Special tokens carry their content (for display only) and ids
        that no token uses carry ``b""``; both are listed in ``special_token_ids``.
    eos_token_ids : list[int]
        The tokenizer's eos token first, then other known end-of-turn markers present as special tokens.
    special_token_ids : list[int]
        Control tokens (and unused ids) that never stand for text: a grammar must not emit them as text.

    Raises
    ------
    UnsupportedTokenizer
        If the tokenizer's decoder is not byte-level, SentencePiece-style or plain text (e.g. WordPiece).
    """
    backend = _backend_of(tokenizer)
    if backend is not None:
        pieces = backend.get_vocab(with_added_tokens=True)
        added = backend.get_added_tokens_decoder()
        style = _style_of_backend(backend)
        size = backend.get_vocab_size(with_added_tokens=True)
    else:
        pieces = tokenizer.get_vocab()
        added = dict(getattr(tokenizer, "added_tokens_decoder", {}))
        style = _style_of_slow(tokenizer)
        size = 0
    if hasattr(tokenizer, "__len__") and not _is_raw_backend(tokenizer):
        size = max(size, len(tokenizer))
    size = max(size, max(pieces.values(), default=-1) + 1)

    vocab = [b""] * size
    special = set(range(size)) - set(pieces.values())  # holes: ids no token uses
    for piece, tid in pieces.items():
        vocab[tid] = _piece_bytes(piece, style)
    for tid, token in added.items():
        vocab[tid] = token.content.encode("utf-8")
        if token.special:
            special.add(tid)
    special.update(_declared_special_ids(tokenizer, backend, pieces))
    return vocab, _eos_ids(tokenizer, pieces, special), sorted(special)


def _is_raw_backend(obj: Any) -> bool:
    from tokenizers import Tokenizer

    return isinstance(obj, Tokenizer)


def _backend_of(tokenizer: Any) -> Any:
    if _is_raw_backend(tokenizer):
        return tokenizer
    backend = getattr(tokenizer, "backend_tokenizer", None)
    return backend if _is_raw_backend(backend) else None


def _style_of_backend(backend: Any) -> dict[str, Any]:
    """Read the token encoding off the tokenizer's decoder (how HF itself turns tokens into text)."""
    spec = json.loads(backend.to_str())
    decoders = _flatten(spec.get("decoder"))
    kinds = {d.get("type") for d in decoders}
    model = spec.get("model") or {}
    if "ByteLevel" in kinds:
        return {"kind": "byte_level"}
    if "WordPiece" in kinds or "BPEDecoder" in kinds or "CTC" in kinds:
        raise UnsupportedTokenizer(f"tokenizer decoder {sorted(k for k in kinds if k)} is not supported")
    space = None
    for d in decoders:
        if d.get("type") == "Metaspace":
            space = d.get("replacement", SPIECE_SPACE)
        elif d.get("type") == "Replace" and d.get("content") == " ":
            space = (d.get("pattern") or {}).get("String", space)
    fallback = "ByteFallback" in kinds or bool(model.get("byte_fallback"))
    if space is None and not fallback:
        pre = {d.get("type") for d in _flatten(spec.get("pre_tokenizer"))}
        if "ByteLevel" in pre:
            return {"kind": "byte_level"}
        if "Metaspace" in pre:
            space = SPIECE_SPACE
    return {"kind": "sentencepiece" if space or fallback else "raw", "space": space, "fallback": fallback}


def _style_of_slow(tokenizer: Any) -> dict[str, Any]:
    if hasattr(tokenizer, "byte_decoder"):
        return {"kind": "byte_level"}
    if hasattr(tokenizer, "sp_model"):
        return {"kind": "sentencepiece", "space": SPIECE_SPACE, "fallback": True}
    raise UnsupportedTokenizer(f"cannot derive token bytes of slow tokenizer {type(tokenizer).__name__}")


def _flatten(component: dict | None) -> list[dict]:
    if not component:
        return []
    if component.get("type") == "Sequence":
        children = component.get("decoders") or component.get("pretokenizers") or []
        return [leaf for child in children for leaf in _flatten(child)]
    return [component]


def _piece_bytes(piece: str, style: dict[str, Any]) -> bytes:
    if style["kind"] == "byte_level":
        table = _unicode_to_bytes()
        if all(ch in table for ch in piece):
            return bytes(table[ch] for ch in piece)
        return piece.encode("utf-8")  # not byte-encoded (an added token stored in the base vocab)
    if style["kind"] == "sentencepiece":
        if style["fallback"]:
            match = _BYTE_FALLBACK.fullmatch(piece)
            if match:
                return bytes([int(match.group(1), 16)])
        if style["space"]:
            piece = piece.replace(style["space"], " ")
    return piece.encode("utf-8")


def _declared_special_ids(tokenizer: Any, backend: Any, pieces: dict[str, int]) -> set[int]:
    ids = {int(i) for i in getattr(tokenizer, "all_special_ids", []) or [] if i is not None}
    if backend is not None:
        unk = json.loads(backend.to_str()).get("model", {}).get("unk_token")
        if unk in pieces:
            ids.add(pieces[unk])  # decodes to a placeholder, never to the text it replaced
    return ids


def _eos_ids(tokenizer: Any, pieces: dict[str, int], special: set[int]) -> list[int]:
    eos: list[int] = []
    declared = getattr(tokenizer, "eos_token_id", None)
    if isinstance(declared, int):
        eos.append(declared)
    for marker in KNOWN_EOS_MARKERS:
        tid = pieces.get(marker)
        if tid is not None and tid in special and tid not in eos:
            eos.append(tid)
    return eos
