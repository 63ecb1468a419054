"""Tiny random-weight chat models that carry real chat templates (``templates/``), for tool-format tests.

The tokenizer is the default model's (so every template's markers tokenize); the weights are a tiny random
Llama over its vocabulary, so outputs are random but every constrained one is well-formed.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

TEMPLATES = Path(__file__).parent / "templates"
TEMPLATE_NAMES = ("qwen2_5", "qwen3", "llama3_1", "mistral_v3", "hermes2_pro")


def default_tokenizer_dir() -> Path:
    from lightllm_struct.models.loader import resolve_model_dir

    return resolve_model_dir(None)


def write_tokenizer(path: Path, template: str | None) -> Path:
    """tokenizer.json of the default model plus a tokenizer_config.json holding ``template`` (a file stem)."""
    path.mkdir(parents=True, exist_ok=True)
    shutil.copy(default_tokenizer_dir() / "tokenizer.json", path / "tokenizer.json")
    config = {"eos_token": "<|im_end|>", "bos_token": "<|im_start|>"}
    if template is not None:
        config["chat_template"] = (TEMPLATES / f"{template}.jinja").read_text()
    (path / "tokenizer_config.json").write_text(json.dumps(config))
    return path


def write_chat_model(path: Path, template: str) -> Path:
    """A loadable model folder: tiny random weights, the default tokenizer, ``template``."""
    from tests.distributed.tiny_model import write_tiny_llama

    write_tokenizer(path, template)
    vocab = json.loads((path / "tokenizer.json").read_text())
    size = max(max(vocab["model"]["vocab"].values()), *(t["id"] for t in vocab.get("added_tokens", []))) + 1
    write_tiny_llama(path, hidden=32, intermediate=64, num_heads=2, num_kv_heads=2, num_layers=1, vocab=size,
                     tie=True)
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 2048}))  # room for tools
    return path
