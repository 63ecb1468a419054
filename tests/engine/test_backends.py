"""EngineConfig.kernels picks attention, layer ops and sampler together: torch on the CPU by default, Triton
selectable on the CPU through its interpreter (same greedy tokens as torch), an unknown name refused."""
from __future__ import annotations

import importlib.util
import os

import pytest
import torch

from lightllm_struct.config import ConfigError, EngineConfig
from lightllm_struct.engine.backends import KERNEL_BACKENDS, resolve_backends
from lightllm_struct.llm import LLM
from lightllm_struct.models.ops import TORCH_OPS
from lightllm_struct.registry import UnknownChoiceError
from lightllm_struct.request import SamplingParams
from tests.engine.tiny_checkpoint import write_tiny_checkpoint

INTERPRETER = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
CPU = torch.device("cpu")


def test_auto_is_torch_on_the_cpu():
    backends = resolve_backends("auto", CPU)
    assert backends.name == "torch" and backends.attention == "torch" and backends.layer_ops is TORCH_OPS


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="Triton is not installed")
def test_auto_is_triton_on_cuda():
    from lightllm_struct.kernels.norm import rms_norm

    backends = resolve_backends("auto", torch.device("cuda"))
    assert backends.name == "triton" and backends.layer_ops.rms_norm is rms_norm  # the defect of issue 12


def test_an_unknown_name_is_refused_with_the_supported_list():
    with pytest.raises(ConfigError, match=r"kernels is unknown \(Supported: auto, torch, triton\)"):
        EngineConfig(kernels="cuda")
    with pytest.raises(ConfigError, match="Supported: auto, torch, triton"):
        EngineConfig.from_env({"LLMS_KERNELS": "fast"})
    with pytest.raises(UnknownChoiceError, match="Supported: torch, triton"):
        KERNEL_BACKENDS.get("cuda")


def test_the_environment_chooses_when_no_argument_does():
    assert EngineConfig.from_env({"LLMS_KERNELS": "torch"}).kernels == "torch"
    assert EngineConfig.from_env({"LLMS_KERNELS": "torch"}, kernels="auto").kernels == "auto"


@pytest.mark.skipif(not INTERPRETER, reason="the Triton interpreter is off (it is on in CPU-only test runs)")
def test_triton_on_the_cpu_gives_torchs_greedy_tokens(tmp_path):
    path = write_tiny_checkpoint(tmp_path / "tiny")
    options = dict(device="cpu", dtype="float32", num_kv_slots=256, max_num_seqs=4, num_threads=1)
    prompts = [[1, 70, 71, 72, 73], [1, 80, 81]]
    params = SamplingParams(temperature=0, max_tokens=6, ignore_eos=True)
    tokens = {}
    for kernels in ("torch", "triton"):
        llm = LLM(str(path), kernels=kernels, **options)
        try:
            assert llm.engine.backends.name == kernels
            assert type(llm.engine.model.attn_backend).__name__ == \
                {"torch": "TorchAttentionBackend", "triton": "TritonAttentionBackend"}[kernels]
            tokens[kernels] = [o.token_ids for o in llm.generate(prompts, params)]
        finally:
            llm.engine.shutdown()
    assert tokens["triton"] == tokens["torch"]
    assert all(len(t) == 6 for t in tokens["torch"])


def test_triton_where_it_cannot_run_is_refused(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ConfigError, match="kernels='triton' needs"):
        resolve_backends("triton", CPU)


def test_no_code_chooses_by_a_class_name():
    """Capabilities (``supports_cuda_graphs``) decide, never ``type(x).__name__ == "..."`` tests."""
    import ast
    from pathlib import Path

    import lightllm_struct

    root = Path(lightllm_struct.__file__).parent
    found = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare) and any(
                    isinstance(side, ast.Attribute) and side.attr == "__name__" and isinstance(side.value, ast.Call)
                    for side in [node.left, *node.comparators]):
                found.append(f"{path.relative_to(root)}:{node.lineno}")
    assert found == []
