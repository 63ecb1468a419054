"""Process-group set-up for tensor parallelism: rendezvous, backend choice and the two groups a rank uses.

Every rank joins two groups over the same ranks:

* the *data* group (NCCL on CUDA, gloo on the CPU) carries the model's all-reduces/all-gathers and the
  packed step inputs; its timeout is the collective timeout, so a hung rank turns into an error;
* the *control* group (always gloo, on the host) carries the small header of each step message. Ranks > 0
  wait in it while the server is idle, so its timeout is very long: idleness must never look like a hang.
"""
from __future__ import annotations

import datetime
import os
import socket
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from lightllm_struct.models.parallel import TensorParallel
from lightllm_struct.errors import LightLLMStructError

# NVLink multicast (NVLS) is off on every rank: the lent GPU hosts do not support it reliably.
MULTICAST_OFF_ENV = {
    "NCCL_NVLS_ENABLE": "0",
    "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
    "NVSHMEM_DISABLE_NVLS": "1",
}
DEFAULT_TIMEOUT_S = 120.0  # EngineConfig.tp_timeout_s passes the configured one
# Long enough for any idle period of a server; a dead peer is still noticed at once (closed socket).
IDLE_TIMEOUT = datetime.timedelta(days=365)
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


class DistributedInitError(LightLLMStructError):
    """The ranks could not rendezvous or build their process groups."""


@dataclass(frozen=True, kw_only=True)
class Rendezvous:
    """Where and as whom a rank joins: torchrun's RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT conventions."""

    rank: int
    world_size: int
    master_addr: str = "127.0.0.1"
    master_port: int = 29500
    local_rank: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.world_size:
            raise DistributedInitError(f"rank {self.rank} out of range for world size {self.world_size}")

    @property
    def device_index(self) -> int:
        return self.rank if self.local_rank is None else self.local_rank

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Rendezvous | None:
        """The rendezvous torchrun (or any launcher of the same conventions) describes, or None."""
        env = os.environ if env is None else env
        if "RANK" not in env or "WORLD_SIZE" not in env:
            return None
        local = env.get("LOCAL_RANK")
        return cls(
            rank=int(env["RANK"]),
            world_size=int(env["WORLD_SIZE"]),
            master_addr=env.get("MASTER_ADDR", "127.0.0.1"),
            master_port=int(env.get("MASTER_PORT", "29500")),
            local_rank=None if local is None else int(local),
        )


@dataclass(frozen=True)
class DistContext:
    """What a rank holds after set-up: its TP context (data group), the control group and its device."""

    tp: TensorParallel
    control_group: Any
    device: torch.device
    backend: str

    @property
    def rank(self) -> int:
        return self.tp.rank

    @property
    def world_size(self) -> int:
        return self.tp.size


def find_free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free right now on ``host`` (the OS picks it; the tiny race until use is accepted)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def apply_rank_env(master_addr: str, env: Any = None) -> None:
    """Set the environment every rank needs before its first collective (multicast off, loopback gloo)."""
    env = os.environ if env is None else env
    for key, value in MULTICAST_OFF_ENV.items():
        env[key] = value
    # gloo resolves the host name to pick an interface; on a single host that can be an unroutable one.
    if master_addr in _LOOPBACK:
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")


def resolve_device(device: str | torch.device, rdv: Rendezvous) -> torch.device:
    """The device of this rank: ``cuda`` becomes this rank's local GPU; ``auto`` picks CUDA if present."""
    kind = torch.device(device).type if str(device) != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise DistributedInitError("device 'cuda' requested but CUDA is not available")
        index = rdv.device_index
        if index >= torch.cuda.device_count():
            raise DistributedInitError(f"rank {rdv.rank} needs GPU {index}, only {torch.cuda.device_count()} present")
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    return torch.device(kind)


def init_distributed(
    rdv: Rendezvous,
    *,
    device: str | torch.device = "auto",
    timeout_s: float = DEFAULT_TIMEOUT_S,
    store: Any = None,
) -> DistContext:
    """Join the default (data) group and build the control group; returns this rank's context.

    Parameters
    ----------
    rdv:
        This rank and where to meet the others.
    device:
        ``"cpu"``, ``"cuda"`` or ``"auto"``; NCCL is used exactly when the device is a GPU, gloo otherwise.
    timeout_s:
        Collective timeout of the data group: how long a rank waits for a hung peer before failing.
    store:
        A ready ``torch.distributed.Store`` (the in-process launcher makes one); None = TCP at the master.

    Raises
    ------
    DistributedInitError
        If the group cannot be formed (a rank did not come, the port is taken, ...).
    """
    apply_rank_env(rdv.master_addr)
    dev = resolve_device(device, rdv)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if dev.type == "cpu":
        # Ranks share the host's cores; more threads per rank only oversubscribes them.
        torch.set_num_threads(1)
    timeout = datetime.timedelta(seconds=timeout_s)
    if store is None:
        # env:// honours torchrun's agent store (TORCHELASTIC_USE_AGENT_STORE) at MASTER_ADDR:MASTER_PORT.
        os.environ.setdefault("MASTER_ADDR", rdv.master_addr)
        os.environ.setdefault("MASTER_PORT", str(rdv.master_port))
    kwargs: dict[str, Any] = {"store": store} if store is not None else {"init_method": "env://"}
    try:
        dist.init_process_group(backend, rank=rdv.rank, world_size=rdv.world_size, timeout=timeout, **kwargs)
        control = dist.new_group(backend="gloo", timeout=IDLE_TIMEOUT)
    except (RuntimeError, ValueError, dist.DistError) as e:
        raise DistributedInitError(f"rank {rdv.rank}: tensor-parallel rendezvous at "
                                   f"{rdv.master_addr}:{rdv.master_port} failed: {e}") from e
    tp = TensorParallel(rank=rdv.rank, size=rdv.world_size, group=None)
    return DistContext(tp=tp, control_group=control, device=dev, backend=backend)


def destroy_distributed() -> None:
    """Leave every group (safe to call when none was joined)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
