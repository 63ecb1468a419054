"""The command line: engine flags are EngineConfig's fields, one to one, and env vars fill the rest."""
from __future__ import annotations

import dataclasses

import pytest

from lightllm_struct.cli import build_parser, engine_config
from lightllm_struct.config import EngineConfig


def test_every_config_field_has_a_flag():
    serve = build_parser()._subparsers._group_actions[0].choices["serve"]
    dests = {a.dest for a in serve._actions}
    assert {f.name for f in dataclasses.fields(EngineConfig)} <= dests


def test_flags_map_onto_config_fields(monkeypatch):
    monkeypatch.delenv("LLMS_MAX_NUM_SEQS", raising=False)
    args = build_parser().parse_args(["serve", "--model", "m.gguf", "--device", "cpu", "--tp", "2",
                                      "--max-num-seqs", "7", "--no-enable-prefix-caching",
                                      "--grammar-compile-timeout-s", "1.5", "--port", "9001"])
    cfg = engine_config(args)
    assert (cfg.model, cfg.device, cfg.tensor_parallel_size, cfg.max_num_seqs) == ("m.gguf", "cpu", 2, 7)
    assert cfg.enable_prefix_caching is False and cfg.grammar_compile_timeout_s == 1.5
    assert args.port == 9001 and args.host == "127.0.0.1"


def test_env_fills_what_flags_leave_out(monkeypatch):
    monkeypatch.setenv("LLMS_MAX_NUM_SEQS", "5")
    assert engine_config(build_parser().parse_args(["serve"])).max_num_seqs == 5
    assert engine_config(build_parser().parse_args(["serve", "--max-num-seqs", "9"])).max_num_seqs == 9


def test_kernels_flag_and_env_choose_the_backend(monkeypatch):
    assert engine_config(build_parser().parse_args(["serve", "--kernels", "torch"])).kernels == "torch"
    monkeypatch.setenv("LLMS_KERNELS", "triton")
    assert engine_config(build_parser().parse_args(["serve"])).kernels == "triton"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--kernels", "cuda"])


def test_bad_values_are_rejected():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--max-num-seqs", "many"])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--dtype", "int3"])


def test_a_public_host_needs_a_key_or_an_explicit_flag(monkeypatch):
    from lightllm_struct.cli import access_policy
    from lightllm_struct.config import ConfigError

    monkeypatch.delenv("LLMS_API_KEY", raising=False)
    parse = build_parser().parse_args
    assert access_policy(parse(["serve"])).api_key is None  # loopback: fine without
    with pytest.raises(ConfigError):
        access_policy(parse(["serve", "--host", "0.0.0.0"]))
    assert access_policy(parse(["serve", "--host", "0.0.0.0", "--api-key", "k"])).api_key == "k"
    assert access_policy(parse(["serve", "--host", "0.0.0.0", "--allow-public-without-key"])).api_key is None
    monkeypatch.setenv("LLMS_API_KEY", "from-env")
    policy = access_policy(parse(["serve", "--host", "0.0.0.0", "--allowed-origins", "https://a.example,https://b"]))
    assert policy.api_key == "from-env" and policy.allowed_origins == ("https://a.example", "https://b")


def test_the_docker_image_binds_all_interfaces_only_with_a_key(monkeypatch):
    # issue 11: the image bound 0.0.0.0 with no auth. Its ENTRYPOINT + CMD, parsed as the container runs them.
    import json
    import re
    from pathlib import Path

    from lightllm_struct.cli import access_policy
    from lightllm_struct.config import ConfigError

    docker = Path(__file__).resolve().parents[1] / "docker"
    text = docker.joinpath("Dockerfile").read_text()
    entry = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", text, re.M).group(1))
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", text, re.M).group(1))
    assert entry[:2] == ["lightllm-struct", "serve"]
    args = build_parser().parse_args(entry[1:] + cmd)
    assert args.host == "0.0.0.0"
    monkeypatch.delenv("LLMS_API_KEY", raising=False)
    with pytest.raises(ConfigError):
        access_policy(args)
    monkeypatch.setenv("LLMS_API_KEY", "k")
    assert access_policy(args).api_key == "k"
    # compose refuses to start without the key rather than defaulting it to something empty
    assert re.search(r'LLMS_API_KEY: "\$\{LLMS_API_KEY:\?', docker.joinpath("compose.yaml").read_text())
