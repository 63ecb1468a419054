"""The torch references are the CPU path: they, the models, the engine and the server import without Triton."""
from __future__ import annotations

import subprocess
import sys

import torch

from lightllm_struct.kernels import reference
from lightllm_struct.models.ops import TORCH_OPS

_WITHOUT_TRITON = """
import sys
sys.modules["triton"] = None  # import triton now raises ImportError, as where it is not installed
import torch
import lightllm_struct.llm, lightllm_struct.server.app
from lightllm_struct.engine.backends import resolve_backends
from lightllm_struct.engine.sampler import SamplingTensors, sample
assert resolve_backends("auto", torch.device("cuda")).name == "torch"
params = SamplingTensors.from_lists(temperature=[0.0], top_p=[1.0], top_k=[0], seed=[0], step=[0])
assert sample(torch.tensor([[0.0, 2.0, 1.0]]), params).tolist() == [1]
print("ok")
"""


def test_the_cpu_path_imports_and_runs_without_triton():
    done = subprocess.run([sys.executable, "-c", _WITHOUT_TRITON], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_torch_ops_are_the_references():
    assert TORCH_OPS.rms_norm is reference.rms_norm and TORCH_OPS.apply_rotary is reference.apply_rotary
    x, w = torch.randn(3, 8), torch.rand(8) + 0.5
    want = w * x / x.pow(2).mean(-1, keepdim=True).add(1e-5).sqrt()
    assert torch.allclose(reference.rms_norm(x, w, 1e-5), want, atol=1e-6)
    gate_up = torch.randn(2, 6)
    assert torch.allclose(reference.silu_and_mul(gate_up), torch.nn.functional.silu(gate_up[:, :3]) * gate_up[:, 3:])
