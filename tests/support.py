"""Test helpers shared across packages: a real server in a subprocess, and transformers' reference model."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import httpx
import pytest


@contextlib.contextmanager
def running_server(port: int, args: list[str], *, env: dict[str, str] | None = None,
                   startup_timeout_s: float = 240) -> Iterator[tuple[str, subprocess.Popen, object]]:
    """``lightllm-struct serve`` on 127.0.0.1:``port`` until /health answers; yields (url, process, log).

    The log goes to a temporary file, printed in the failure message when the server does not come up; the
    process is terminated (then killed) on exit.
    """
    log = tempfile.NamedTemporaryFile("w+", prefix="llms-server-", suffix=".log", delete=False)
    cmd = [sys.executable, "-m", "lightllm_struct.cli", "serve", "--host", "127.0.0.1", "--port", str(port), *args]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + startup_timeout_s
    try:
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                pytest.fail(f"server did not start (exit {proc.poll()}):\n{log.read()[-4000:]}")
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        yield url, proc, log
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()
        os.unlink(log.name)


def transformers_default_model():
    """transformers' own LlamaForCausalLM filled by transformers' GGUF loader from the default model's file
    (what ``from_pretrained(gguf_file=...)`` does, minus its dependency on ``accelerate``), so a mistake in our
    converter or model shows up as a mismatch. It never stops on EOS: comparisons run exactly N tokens."""
    from transformers import AutoConfig, LlamaForCausalLM
    from transformers.initialization import no_init_weights
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    from lightllm_struct.models.loader import default_model_path

    path = default_model_path()
    config = AutoConfig.from_pretrained(path.parent, gguf_file=path.name)
    with no_init_weights():
        model = LlamaForCausalLM(config)
    tensors = load_gguf_checkpoint(str(path), return_tensors=True, model_to_load=model)["tensors"]
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    assert set(missing) <= {"lm_head.weight"} and not unexpected
    model.tie_weights()
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    return model.float().eval()
