"""The token trie of a vocabulary, kept on disk between processes (``$LLMS_CACHE_DIR/grammar``).

Building the 128k-token Llama 3 trie in Python takes about a second; loading its arrays takes
milliseconds. Files are named by a hash of the vocabulary's bytes and text ids, written under a temporary
name and renamed, so a process never reads a half-written file; an unreadable file is rebuilt.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from lightllm_struct.grammar.masks.scan_trie import VocabTrie

_FORMAT = 1  # bump when VocabTrie's arrays change meaning


def cache_root() -> Path:
    """``$LLMS_CACHE_DIR``, else ``~/.cache/lightllm_struct``."""
    return Path(os.environ.get("LLMS_CACHE_DIR") or Path.home() / ".cache" / "lightllm_struct")


def vocab_digest(vocab: list[bytes], text_ids: list[int]) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(f"trie{_FORMAT}:{len(vocab)}:".encode())
    h.update(np.fromiter((len(v) for v in vocab), dtype=np.int64, count=len(vocab)).tobytes())
    h.update(b"".join(vocab))
    h.update(np.asarray(text_ids, dtype=np.int64).tobytes())
    return h.hexdigest()


def cached_trie(vocab: list[bytes], text_ids: list[int]) -> VocabTrie:
    """The trie of ``vocab`` (text tokens ``text_ids``), from the disk cache when it is there."""
    path = cache_root() / "grammar" / f"trie-{vocab_digest(vocab, text_ids)}.npz"
    try:
        with np.load(path) as data:
            return VocabTrie.from_arrays(data)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        pass  # absent or unreadable: build it
    trie = VocabTrie(vocab, text_ids)
    _save(path, trie)
    return trie


def _save(path: Path, trie: VocabTrie) -> None:
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as out:
            np.savez(out, **trie.arrays())
        os.replace(tmp, path)
    except OSError:  # a read-only or full disk only costs the next process the build
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
