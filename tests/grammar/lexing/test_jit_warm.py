"""The lexer builders' numba code is specialised by the warm-up exactly as real compiles use it, so no compile
under a deadline pays numba's first compile (tens of seconds on a fresh install)."""
from __future__ import annotations

import pytest

from lightllm_struct.grammar import GrammarCompiler
from lightllm_struct.grammar.lexing import jit_hash, product_jit, subset_jit
from lightllm_struct.grammar.lexing.jit_warm import warm_lexing_jit
from tests.grammar.small_vocab import small_tokenizer

pytestmark = pytest.mark.skipif(not (subset_jit.AVAILABLE and product_jit.AVAILABLE), reason="numba is not installed")

_DISPATCHERS = {"subset _step": lambda: subset_jit._step, "subset _closure0": lambda: subset_jit._closure0,
                "subset _hash": lambda: subset_jit._hash, "product": lambda: product_jit._product}


def _signatures() -> dict[str, int]:
    return {name: len(get().signatures) for name, get in _DISPATCHERS.items()}


def test_warm_up_specialises_every_builder_and_real_compiles_add_no_signature():
    warm_lexing_jit()
    after_warm = _signatures()
    assert all(count >= 1 for count in after_warm.values()), after_warm
    compiler = GrammarCompiler(small_tokenizer(), compile_timeout_s=None)
    # an object with many keys (the key-complement regex through the subset construction) and a lexer
    # state of several terminals (the product builder)
    schema = {"type": "object", "properties": {f"key{i}": {"type": ["string", "integer", "null"]} for i in range(12)},
              "required": ["key0"]}
    compiler.compile_json_schema(schema)
    compiler.compile_regex(r"(ab|cd)+[0-9]{2,5}")
    assert _signatures() == after_warm
    assert len(jit_hash.rehashed.signatures) <= 1


def test_warm_up_is_once_a_process():
    warm_lexing_jit()
    before = _signatures()
    warm_lexing_jit()
    assert _signatures() == before
