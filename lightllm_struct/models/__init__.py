"""Model code in plain torch: the Llama family over a token-level KV cache, tensor-parallel from the start.

- ``config.py``: ``ModelConfig`` from an HF config.json; ``UnsupportedArchitecture`` for anything else.
- ``loader.py``: ``load_model(path_or_none, *, device, dtype, tp)``; ``gguf.py`` converts GGUF files once.
- ``layers.py``: sharded linear/embedding layers, RMSNorm, RoPE; ``ops.py``: the swappable fused-op table.
- ``attention.py``: ``AttentionMetadata``, the torch attention backend and the backend registry.
- ``llama.py``: ``LlamaForCausalLM`` (``forward`` -> hidden states, ``compute_logits`` -> fp32 logits).
"""
