"""Tiny random-weight chat models that carry real chat templates (``templates/``), for tool-format tests.

``write_tokenizer`` gives the default model's tokenizer with a template (prompt tests); ``write_chat_model``
a loadable model: a byte-level BPE of a few hundred tokens trained here on the templates' own text (so token
masks are cheap and every marker tokenizes), and tiny random Llama weights over it. Outputs are random, but
every constrained one is well-formed.
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


def _small_bpe(path: Path) -> int:
    """Train a byte-level BPE on the templates and some JSON; returns its vocabulary size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [p.read_text() for p in sorted(TEMPLATES.glob("*.jinja"))]
    corpus += ['{"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}', "The weather is sunny."] * 20
    trainer = trainers.BpeTrainer(vocab_size=640, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    tok.save(str(path / "tokenizer.json"))
    return tok.get_vocab_size(with_added_tokens=True)


def write_chat_model(path: Path, template: str) -> Path:
    """A loadable model folder: tiny random weights, a small BPE tokenizer, ``template``."""
    from tests.distributed.tiny_model import write_tiny_llama

    write_tokenizer(path, template)
    size = _small_bpe(path)
    write_tiny_llama(path, hidden=32, intermediate=64, num_heads=2, num_kv_heads=2, num_layers=1, vocab=size,
                     tie=True)
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 2048}))  # room for tools
    return path
