"""The on-disk token trie: the same arrays as a fresh build, rebuilt when the file is damaged."""
from __future__ import annotations

import numpy as np

from lightllm_struct.grammar.masks.scan_trie import VocabTrie
from lightllm_struct.grammar.vocab import trie_cache

VOCAB = [b"a", b"ab", b"abc", b"b", b"ba", b"", b"ab", b"\xe4\xb8", b"\xe4\xb8\xad", b"zz"]
TEXT_IDS = [0, 1, 2, 3, 4, 6, 7, 8, 9]


def _assert_equal(a: VocabTrie, b: VocabTrie) -> None:
    for name in VocabTrie.FIELDS:
        np.testing.assert_array_equal(np.asarray(getattr(a, name)), np.asarray(getattr(b, name)), err_msg=name)


def test_second_load_comes_from_disk_and_equals_a_build(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMS_CACHE_DIR", str(tmp_path))
    first = trie_cache.cached_trie(VOCAB, TEXT_IDS)
    files = list((tmp_path / "grammar").glob("trie-*.npz"))
    assert len(files) == 1
    built = []
    monkeypatch.setattr(trie_cache, "VocabTrie", type("Spy", (VocabTrie,), {
        "__init__": lambda self, *a: built.append(a) or VocabTrie.__init__(self, *a)}))
    second = trie_cache.cached_trie(VOCAB, TEXT_IDS)
    assert not built  # loaded, not built
    _assert_equal(first, VocabTrie(VOCAB, TEXT_IDS))
    _assert_equal(second, first)


def test_other_vocabulary_other_file_and_damaged_file_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMS_CACHE_DIR", str(tmp_path))
    trie_cache.cached_trie(VOCAB, TEXT_IDS)
    trie_cache.cached_trie(VOCAB, TEXT_IDS[:-1])
    files = sorted((tmp_path / "grammar").glob("trie-*.npz"))
    assert len(files) == 2
    for f in files:
        f.write_bytes(b"not a zip file")
    _assert_equal(trie_cache.cached_trie(VOCAB, TEXT_IDS), VocabTrie(VOCAB, TEXT_IDS))


def test_unwritable_cache_still_gives_the_trie(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("LLMS_CACHE_DIR", str(blocker))  # a file where the folder should be
    _assert_equal(trie_cache.cached_trie(VOCAB, TEXT_IDS), VocabTrie(VOCAB, TEXT_IDS))
