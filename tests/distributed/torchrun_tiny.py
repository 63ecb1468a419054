"""Run under torchrun (2 ranks): greedy-decode a tiny model at TP=2 and write rank 0's tokens to a file.

Usage: torchrun --nproc-per-node 2 tests/distributed/torchrun_tiny.py MODEL_DIR OUT_JSON
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for `tests.`

from lightllm_struct.config import EngineConfig  # noqa: E402
from lightllm_struct.distributed.tp_model import load_tp_model, run_worker_if_torchrun  # noqa: E402
from tests.distributed.test_tp_model import PROMPTS, greedy_trace  # noqa: E402


def main(model_dir: str, out: str) -> None:
    config = EngineConfig(model=model_dir, device="cpu", tensor_parallel_size=2)
    if run_worker_if_torchrun(config):
        return
    model, _, _ = load_tp_model(model_dir, tensor_parallel_size=2, device="cpu", timeout_s=60)
    try:
        tokens, _ = greedy_trace(model, PROMPTS, 8, announce=True)
        Path(out).write_text(json.dumps({"tokens": tokens, "procs": len(model.ranks.procs)}))
    finally:
        model.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:3])
