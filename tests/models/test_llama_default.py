"""The default model (SmolLM2-135M-Instruct, Q4_1 GGUF) against transformers' own implementation.

The reference is built by transformers alone from the GGUF file (its own dequantization and q/k
un-permutation), so a mistake in our converter or model shows up as a mismatch.
"""
from __future__ import annotations

import pytest
import torch

from lightllm_struct.models.loader import load_model
from tests.models.helpers import StepRunner, greedy_generate
from tests.support import transformers_default_model

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    ",
    "Once upon a time, in a small village by the sea,",
    "List three colors:\n1.",
    '{"name": "Alice", "age": 30, "city": "',
    "Translate to French: Good morning, how are you?",
]
CHATS = [
    [{"role": "user", "content": "What is 17 times 23?"}],
    [{"role": "system", "content": "Answer in JSON."}, {"role": "user", "content": "Give me a user record."}],
]


@pytest.fixture(scope="module")
def ours():
    model, config, model_dir = load_model(None)
    return model, config, model_dir


@pytest.fixture(scope="module")
def tokenizer(ours):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(ours[2])


@pytest.fixture(scope="module")
def reference():
    return transformers_default_model()


@pytest.fixture(scope="module")
def prompt_ids(tokenizer):
    texts = PROMPTS + [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in CHATS]
    return [tokenizer(t, add_special_tokens=False).input_ids for t in texts]


def test_default_model_config(ours):
    _, config, model_dir = ours
    assert (config.architecture, config.num_layers, config.hidden_size) == ("LlamaForCausalLM", 30, 576)
    assert (config.num_heads, config.num_kv_heads, config.head_dim) == (9, 3, 64)
    assert config.tie_word_embeddings and config.vocab_size == 49152
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (model_dir / name).is_file(), name


def test_chat_template_in_tokenizer_config(ours, tokenizer):
    import json

    tok_config = json.loads((ours[2] / "tokenizer_config.json").read_text())
    assert "<|im_start|>" in tok_config["chat_template"]
    text = tokenizer.apply_chat_template(CHATS[0], tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|im_start|>assistant\n") and "What is 17 times 23?" in text


def test_logits_match_transformers(ours, reference, prompt_ids):
    model = ours[0]
    runner = StepRunner(model, max_seqs=len(prompt_ids), max_len=max(map(len, prompt_ids)))
    # All prompts prefilled together in one flattened step.
    logits = runner.step(list(enumerate(prompt_ids)))
    for ids, got in zip(prompt_ids, logits):
        with torch.no_grad():
            want = reference(torch.tensor([ids])).logits[0].float()
        assert (got - want).abs().max().item() <= 1e-3


def test_greedy_64_tokens_match_transformers_generate(ours, reference, prompt_ids):
    new_tokens = 64
    prompts = prompt_ids[::2] + prompt_ids[-1:]  # 5 varied prompts (text, code, JSON, chat) keep CI short
    ours_out = greedy_generate(ours[0], prompts, new_tokens)
    for ids, got in zip(prompts, ours_out):
        with torch.no_grad():
            out = reference.generate(
                torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                max_new_tokens=new_tokens, do_sample=False, pad_token_id=0,
            )
        assert got == out[0, len(ids):].tolist()
