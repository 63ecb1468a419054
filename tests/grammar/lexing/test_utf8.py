"""UTF-8 range decomposition against Python's own encoder."""
from __future__ import annotations

import random

import pytest

from lightllm_struct.grammar.lexing.utf8 import complement_ranges, utf8_sequences


def _matches(seqs, data: bytes) -> bool:
    return any(len(s) == len(data) and all(lo <= b <= hi for (lo, hi), b in zip(s, data)) for s in seqs)


@pytest.mark.parametrize("lo,hi", [(0, 0x10FFFF), (0x80, 0x7FF), (0x7F, 0x800), (0xD000, 0xE100),
                                   (0x1F600, 0x1F64F), (0x41, 0x5A), (0x10000, 0x10FFFF), (0xE9, 0xE9)])
def test_sequences_cover_exactly_the_range(lo, hi):
    seqs = utf8_sequences(lo, hi)
    rng = random.Random(lo)
    probes = [lo, hi, lo - 1, hi + 1, 0x7F, 0x80, 0x7FF, 0x800, 0xFFFF, 0x10000]
    probes += [rng.randrange(0x110000) for _ in range(3000)]
    for cp in probes:
        if 0 <= cp <= 0x10FFFF and not 0xD800 <= cp <= 0xDFFF:
            assert _matches(seqs, chr(cp).encode("utf-8")) == (lo <= cp <= hi), hex(cp)


def test_no_sequence_matches_invalid_utf8():
    seqs = utf8_sequences(0, 0x10FFFF)
    for bad in [b"\x80", b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xff", b"\xe0\x80\x80"]:
        assert not _matches(seqs, bad)


def test_complement():
    assert complement_ranges([(0, 9), (20, 0x10FFFF)]) == [(10, 19)]
    assert complement_ranges([]) == [(0, 0x10FFFF)]
