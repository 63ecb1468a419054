"""Rendezvous conventions (torchrun's variables) and the environment every rank gets."""
from __future__ import annotations

import pytest

from lightllm_struct.distributed.group import (
    MULTICAST_OFF_ENV,
    DistributedInitError,
    Rendezvous,
    apply_rank_env,
    find_free_port,
)


def test_rendezvous_reads_torchrun_variables():
    env = {"RANK": "3", "WORLD_SIZE": "4", "MASTER_ADDR": "10.0.0.2", "MASTER_PORT": "29511", "LOCAL_RANK": "1"}
    rdv = Rendezvous.from_env(env)
    assert (rdv.rank, rdv.world_size, rdv.master_addr, rdv.master_port, rdv.device_index) == (
        3, 4, "10.0.0.2", 29511, 1)
    assert Rendezvous.from_env({}) is None
    with pytest.raises(DistributedInitError):
        Rendezvous.from_env({"RANK": "4", "WORLD_SIZE": "4"})


def test_every_rank_has_multicast_off_and_loopback_gloo():
    env: dict[str, str] = {"NCCL_NVLS_ENABLE": "1"}
    apply_rank_env("127.0.0.1", env)
    assert {k: env[k] for k in MULTICAST_OFF_ENV} == {
        "NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}
    assert env["GLOO_SOCKET_IFNAME"] == "lo"
    remote: dict[str, str] = {}
    apply_rank_env("10.0.0.2", remote)
    assert "GLOO_SOCKET_IFNAME" not in remote


def test_free_port_is_bindable():
    import socket

    port = find_free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
