"""CPU generation throughput of the default model: our engine beside transformers' ``generate``, same run.

    .venv/bin/python benchmarks/cpu_generate.py [--batch-sizes 1 8] [--max-tokens 64] [--threads N] [--write]

Greedy decoding of exactly ``--max-tokens`` new tokens per prompt (end of sequence ignored) for batches of
different prompts; tokens/s counts generated tokens over wall time including prefill. Both sides use the same
weights (the default GGUF, dequantized to fp32) and the same number of torch threads. ``--write`` replaces the
``## CPU generation`` section of benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from lightllm_struct.config import EngineConfig  # noqa: E402

PROMPTS = [
    "The capital of France is", "def fibonacci(n):\n    ", "Once upon a time, in a small village by the sea,",
    '{"name": "Alice", "age": 30, "city": "', "Translate to French: Good morning, how are you?",
    "List three colors:\n1.", "Q: What is 12 + 30?\nA:", "The quick brown fox",
]
RESULTS = Path(__file__).parent / "RESULTS.md"
SECTION = "## CPU generation"


def reference_model():
    """transformers' own LlamaForCausalLM filled by its GGUF loader (from_pretrained(gguf_file=) minus accelerate)."""
    from transformers import AutoConfig, LlamaForCausalLM
    from transformers.initialization import no_init_weights
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    from lightllm_struct.models.loader import default_model_path

    path = default_model_path()
    config = AutoConfig.from_pretrained(path.parent, gguf_file=path.name)
    with no_init_weights():
        model = LlamaForCausalLM(config)
    model.load_state_dict(load_gguf_checkpoint(str(path), return_tensors=True, model_to_load=model)["tensors"],
                          strict=False)
    model.tie_weights()
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    return model.float().eval()


def time_ours(llm, prompts: list[str], max_tokens: int) -> float:
    from lightllm_struct.request import SamplingParams

    params = SamplingParams(temperature=0, max_tokens=max_tokens, ignore_eos=True)
    llm.engine.flush_prefix_cache()  # every run prefills from scratch, as transformers does
    start = time.perf_counter()
    outs = llm.generate(prompts, params)
    elapsed = time.perf_counter() - start
    assert all(o.num_output_tokens == max_tokens for o in outs)
    return len(prompts) * max_tokens / elapsed


def time_transformers(model, tokenizer, prompts: list[str], max_tokens: int) -> float:
    ids = [tokenizer.encode(p) for p in prompts]
    width = max(map(len, ids))
    # Left padding keeps every prompt's last token in the last column, as batched generate needs.
    input_ids = torch.tensor([[0] * (width - len(i)) + i for i in ids])
    mask = torch.tensor([[0] * (width - len(i)) + [1] * len(i) for i in ids])
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(input_ids, attention_mask=mask, max_new_tokens=max_tokens, do_sample=False)
    elapsed = time.perf_counter() - start
    assert out.shape[1] - width == max_tokens
    return len(prompts) * max_tokens / elapsed


def run(batch_sizes: list[int], max_tokens: int, threads: int, repeats: int) -> list[dict]:
    from lightllm_struct.llm import LLM

    llm = LLM(device="cpu", num_threads=threads, num_kv_slots=16384, max_num_seqs=max(batch_sizes))
    torch.set_num_threads(threads)
    model = reference_model()
    rows = []
    for b in batch_sizes:
        prompts = [PROMPTS[i % len(PROMPTS)] for i in range(b)]
        time_ours(llm, prompts, 4)  # warm-up: first-call allocations
        time_transformers(model, llm.tokenizer, prompts, 4)
        ours = max(time_ours(llm, prompts, max_tokens) for _ in range(repeats))
        ref = max(time_transformers(model, llm.tokenizer, prompts, max_tokens) for _ in range(repeats))
        rows.append({"batch": b, "ours": ours, "transformers": ref})
        print(f"batch {b}: lightllm-struct {ours:.1f} tok/s, transformers {ref:.1f} tok/s ({ours / ref:.2f}x)")
    return rows


def table(rows: list[dict], *, command: str, threads: int, max_tokens: int) -> str:
    lines = [SECTION, "",
             f"Default model (SmolLM2-135M-Instruct, Q4_1 GGUF dequantized to fp32), greedy, {max_tokens} new tokens "
             f"per prompt, different prompts per batch, best of the repeats; {threads} torch threads on both sides.",
             "", "| batch | lightllm-struct tok/s | transformers generate tok/s | speed-up |", "|---|---|---|---|"]
    lines += [f"| {r['batch']} | {r['ours']:.1f} | {r['transformers']:.1f} | {r['ours'] / r['transformers']:.2f}x |"
              for r in rows]
    cpu = platform.processor() or platform.machine()
    lines += ["", f"Command: `{command}`  ", f"Machine: {cpu}, {os.cpu_count()} cores visible, "
              f"torch {torch.__version__}, Python {platform.python_version()} (shared with other jobs: noisy)  ",
              f"Date: {datetime.date.today().isoformat()}", ""]
    return "\n".join(lines)


def write_section(text: str) -> None:
    """Replace (or append) this benchmark's section, leaving the other sections as they are."""
    old = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    new = pattern.sub(lambda _: text + "\n", old) if pattern.search(old) else old.rstrip("\n") + "\n\n" + text
    RESULTS.write_text(new)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=EngineConfig().torch_threads)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    args = parser.parse_args()
    rows = run(args.batch_sizes, args.max_tokens, args.threads, args.repeats)
    command = "python benchmarks/cpu_generate.py " + " ".join(sys.argv[1:])
    text = table(rows, command=command.strip(), threads=args.threads, max_tokens=args.max_tokens)
    print(text)
    if args.write:
        write_section(text)


if __name__ == "__main__":
    main()
