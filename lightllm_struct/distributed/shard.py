"""What a model shard needs to run a step on ranks > 0, and the handler that runs it.

The step message carries the model's inputs only: token ids, positions and the attention metadata (slot
indices, context lengths, the request-to-slot rows). Sampling and grammar masks stay on rank 0, which samples
once from the gathered logits; the chosen tokens reach the other ranks as the next step's token ids, so no
rank but 0 ever needs sampling parameters or a bitmask.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from lightllm_struct.distributed.channel import Message, StepChannel
from lightllm_struct.distributed.group import DistContext
from lightllm_struct.distributed.worker import channel_for, serve_steps
from lightllm_struct.models.attention import AttentionMetadata
from lightllm_struct.models.kv_cache import KVCache
from lightllm_struct.models.ops import TORCH_OPS, LayerOps

_META = "meta."
_WIDE_TABLE = "req_to_token_int64"


@dataclass(frozen=True, kw_only=True)
class ShardSpec:
    """How every rank loads its shard: the same (already resolved) model folder, device, dtype and kernels."""

    model_dir: str
    device: str
    dtype: str  # a torch dtype name: "float32", "bfloat16", ...
    attn_backend: str = "auto"
    ops: LayerOps = TORCH_OPS

    def load(self, ctx: DistContext):
        from lightllm_struct.models.loader import load_model

        model, _, _ = load_model(self.model_dir, device=ctx.device, dtype=getattr(torch, self.dtype), tp=ctx.tp,
                                 ops=self.ops, attn_backend=self.attn_backend)
        return model


def pack_step(input_ids: torch.Tensor, positions: torch.Tensor, meta: AttentionMetadata,
              logits_indices: torch.Tensor | None) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Split a step's inputs into host metadata and tensors for the step message."""
    host: dict[str, Any] = {"logits": "indices" if logits_indices is not None else "deferred"}
    tensors = {"input_ids": input_ids, "positions": positions}
    for f in dataclasses.fields(meta):
        value = getattr(meta, f.name)
        if isinstance(value, torch.Tensor):
            if f.name == "req_to_token":
                # Only the first max_seq_len positions of a row are ever read, and slot ids fit 32 bits:
                # the biggest tensor of a step travels at half its size or less.
                value = value[:, : meta.max_seq_len]
                if value.dtype == torch.int64:
                    host[_WIDE_TABLE] = True
                    value = value.to(torch.int32)
            tensors[_META + f.name] = value
        else:
            host[_META + f.name] = value
    if logits_indices is not None:
        tensors["logits_indices"] = logits_indices
    return host, tensors


def unpack_step(msg: Message) -> tuple[torch.Tensor, torch.Tensor, AttentionMetadata, torch.Tensor | None]:
    """The inverse of :func:`pack_step` on a receiving rank."""
    fields = {k[len(_META):]: v for k, v in {**msg.meta, **msg.tensors}.items() if k.startswith(_META)}
    if msg.meta.get(_WIDE_TABLE):
        fields["req_to_token"] = fields["req_to_token"].long()  # the dtype rank 0's backend saw
    meta = AttentionMetadata(**fields)
    return msg.tensors["input_ids"], msg.tensors["positions"], meta, msg.tensors.get("logits_indices")


class ShardHandler:
    """Runs this rank's shard of the model on the steps rank 0 broadcasts, with its own KV cache."""

    def __init__(self, model, *, device: torch.device) -> None:
        self.model = model
        self.device = device
        self.kv_cache = None

    def setup(self, msg: Message) -> None:
        config = self.model.config
        self.kv_cache = None  # free the old pool before the new one is allocated
        self.kv_cache = KVCache(num_layers=config.num_layers, num_slots=msg.meta["num_slots"],
                                num_kv_heads=self.model.num_kv_heads_local, head_dim=config.head_dim,
                                dtype=getattr(torch, msg.meta["dtype"]), device=self.device)

    def step(self, msg: Message) -> None:
        if self.kv_cache is None:
            raise RuntimeError("step message before the KV cache was set up")
        input_ids, positions, meta, logits_indices = unpack_step(msg)
        hidden = self.model.forward(input_ids, positions, meta=meta, kv_cache=self.kv_cache)
        if logits_indices is not None:
            self.model.compute_logits(hidden[logits_indices])

    def logits(self, msg: Message) -> None:
        self.model.compute_logits(msg.tensors["hidden"])


def shard_main(ctx: DistContext, spec: ShardSpec) -> None:
    """Body of a rank > 0: load this rank's shard, then serve rank 0's steps until shutdown."""
    model = spec.load(ctx)
    serve_steps(channel_for(ctx), ShardHandler(model, device=ctx.device))


def send_kv_setup(channel: StepChannel, kv_cache) -> None:
    """Tell the other ranks to allocate a KV pool of the same number of slots as rank 0's ``kv_cache``."""
    from lightllm_struct.distributed.channel import Op

    k0 = kv_cache.k_buffers[0]
    channel.send(Op.SETUP, {"num_slots": int(k0.shape[0]), "dtype": str(k0.dtype).removeprefix("torch.")})
