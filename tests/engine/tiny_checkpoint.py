"""A tiny random-weight Llama checkpoint the engine can load: weights, config and a 258-token byte tokenizer.

Small enough for the Triton interpreter to run every kernel of a step on the CPU in well under a second.
"""
from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from tests.distributed.tiny_model import write_tiny_llama

BOS, EOS = "<s>", "</s>"


def write_tiny_checkpoint(path: Path, **shape) -> Path:
    """``write_tiny_llama(path, **shape)`` plus ``tokenizer.json`` (one token a byte, no merges)."""
    write_tiny_llama(path, **{"vocab": 301, **shape})
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {BOS: 1, EOS: 2, "<unk>": 0} | {ch: 3 + i for i, ch in enumerate(sorted(alphabet))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([BOS, EOS, "<unk>"])
    tok.save(str(path / "tokenizer.json"))
    (path / "tokenizer_config.json").write_text(json.dumps({"bos_token": BOS, "eos_token": EOS}))
    return path
