"""Engine construction: load the model (with the chosen kernel backends) and tokenizer, size the KV pool."""
from __future__ import annotations

import torch

from lightllm_struct.config import EngineConfig
from lightllm_struct.engine.backends import Backends
from lightllm_struct.engine.tokenizer import Tokenizer
from lightllm_struct.models.kv_cache import KVCache

_CPU_KV_GB = 0.5


def load(config: EngineConfig, loaded: tuple | None, backends: Backends, device: torch.device):
    """(model, model_config, tokenizer); loads ``config.model`` with ``backends`` unless ``loaded`` is given."""
    if device.type == "cpu":
        # Small machines stall badly when server, client and torch's thread pool all want every core.
        torch.set_num_threads(config.torch_threads)
    if loaded is None:
        from lightllm_struct.distributed.tp_model import load_tp_model

        # tensor_parallel_size 1 is plain load_model; more starts the other ranks (TensorParallelModel).
        loaded = load_tp_model(config.model, tensor_parallel_size=config.tensor_parallel_size,
                               device=device.type, dtype=config.resolve_dtype(device), ops=backends.layer_ops,
                               attn_backend=backends.attention, timeout_s=config.tp_timeout_s,
                               exit_on_failure=config.tp_exit_on_failure)
    model, model_config, model_dir = loaded
    return model, model_config, Tokenizer(model_dir)


def build_kv(config: EngineConfig, model, model_config, device: torch.device) -> tuple[KVCache, int]:
    """The KV pool and the longest request it serves: ``min(max_model_len or the model's context, slots)``."""
    num_slots_local, kv_heads, head_dim = model.kv_cache_shape(1)
    dtype = next(model.parameters()).dtype
    num_slots = config.num_kv_slots or _slots_for_memory(config, device, kv_heads, head_dim,
                                                         model_config.num_layers, dtype)
    cache = KVCache(num_layers=model_config.num_layers, num_slots=num_slots, num_kv_heads=kv_heads,
                    head_dim=head_dim, dtype=dtype, device=device)
    max_len = min(config.max_model_len or model_config.max_position_embeddings, num_slots - 1)
    return cache, max_len


def build_cuda_graphs(config: EngineConfig, model, kv_cache: KVCache, *, scratch_slot: int, max_context: int):
    """Capture decode steps as CUDA graphs when the model's attention backend supports them on CUDA; else None."""
    attn = getattr(model, "attn_backend", None)
    if config.tensor_parallel_size > 1:
        return None  # a TP step starts with a host-side broadcast to the other ranks: not capturable
    if not config.enable_cuda_graphs or kv_cache.k_buffers[0].device.type != "cuda" or \
            not getattr(attn, "supports_cuda_graphs", False):
        return None
    from lightllm_struct.engine.cuda_graphs import CUDAGraphRunner
    from lightllm_struct.engine.graph_inputs import capture_sizes, tokens_per_seq_sizes

    # Multi-token graphs exist for jump-forward's forced tokens only.
    tokens = 1 if config.enable_jump_forward is False else config.cuda_graph_tokens_per_seq
    graphs = CUDAGraphRunner(model, kv_cache, scratch_slot=scratch_slot, max_context=max_context,
                             batch_sizes=capture_sizes(config.max_num_seqs),
                             tokens_per_seq=tokens_per_seq_sizes(tokens))
    graphs.capture()
    return graphs


def _slots_for_memory(config: EngineConfig, device: torch.device, kv_heads: int, head_dim: int,
                      num_layers: int, dtype: torch.dtype) -> int:
    per_slot = KVCache.bytes_per_slot(num_layers=num_layers, num_kv_heads=kv_heads, head_dim=head_dim, dtype=dtype)
    if config.kv_cache_memory_gb is not None:
        budget = config.kv_cache_memory_gb * 2**30
    elif device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        budget = max(0.0, free - (1 - config.gpu_memory_utilization) * total)
    else:
        budget = _CPU_KV_GB * 2**30
    return max(16, int(budget // per_slot))
