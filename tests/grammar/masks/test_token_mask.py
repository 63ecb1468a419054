from __future__ import annotations

import pytest

from lightllm_struct.grammar.masks.token_mask import SCANNERS, Scanner, scan_cache_for
from tests.grammar.small_vocab import small_tokenizer


@pytest.mark.parametrize("kind", SCANNERS)
def test_every_scanner_keeps_the_scanner_contract(kind):
    scanner = scan_cache_for(small_tokenizer(), kind).scanner
    assert isinstance(scanner, Scanner)
