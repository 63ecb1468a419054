from __future__ import annotations

import pytest

from lightllm_struct.config import ConfigError, EngineConfig


def test_defaults_are_valid_and_frozen():
    config = EngineConfig()
    assert config.model is None and config.enable_prefix_caching
    with pytest.raises(AttributeError):
        config.max_num_seqs = 3


def test_env_vars_fill_fields_and_explicit_options_win():
    env = {"LLMS_MAX_NUM_SEQS": "8", "LLMS_ENABLE_PREFIX_CACHING": "false", "LLMS_DEVICE": "cpu",
           "LLMS_KV_CACHE_MEMORY_GB": "0.25", "LLMS_MODEL": "/models/x.gguf", "LLMS_NUM_KV_SLOTS": "1024"}
    config = EngineConfig.from_env(env, max_num_seqs=4)
    assert config.max_num_seqs == 4 and config.enable_prefix_caching is False and config.device == "cpu"
    assert config.kv_cache_memory_gb == 0.25 and config.model == "/models/x.gguf" and config.num_kv_slots == 1024


@pytest.mark.parametrize("bad", [{"max_num_seqs": 0}, {"device": "tpu"}, {"dtype": "int8"},
                                 {"max_num_batched_tokens": 2, "max_num_seqs": 4}, {"grammar_compile_timeout_s": 0},
                                 {"gpu_memory_utilization": 1.5}])
def test_out_of_range_values_are_config_errors(bad):
    with pytest.raises(ConfigError):
        EngineConfig(**bad)


def test_unknown_option_and_unparsable_env_are_errors():
    with pytest.raises(ConfigError, match="unknown engine option"):
        EngineConfig.from_env({}, max_num_sequences=3)
    with pytest.raises(ConfigError, match="LLMS_MAX_NUM_SEQS"):
        EngineConfig.from_env({"LLMS_MAX_NUM_SEQS": "many"})


def test_torch_threads_default_leaves_room_on_small_machines():
    assert 1 <= EngineConfig().torch_threads <= 4
    assert EngineConfig(num_threads=3).torch_threads == 3


def test_jump_forward_is_automatic_unless_set():
    assert EngineConfig().enable_jump_forward is None  # the engine decides: on (graphs run forced tokens)
    assert EngineConfig.from_env({"LLMS_ENABLE_JUMP_FORWARD": "off"}).enable_jump_forward is False
    assert EngineConfig.from_env({"LLMS_ENABLE_JUMP_FORWARD": "1"}).enable_jump_forward is True
    with pytest.raises(ConfigError, match="LLMS_ENABLE_JUMP_FORWARD"):
        EngineConfig.from_env({"LLMS_ENABLE_JUMP_FORWARD": "sometimes"})


def test_device_and_dtype_resolve_from_the_config():
    import torch

    cpu = torch.device("cpu")
    assert EngineConfig(device="cpu").resolve_device() == cpu
    assert EngineConfig().resolve_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert EngineConfig().resolve_dtype(cpu) == torch.float32
    assert EngineConfig().resolve_dtype(torch.device("cuda")) == torch.bfloat16
    assert EngineConfig(dtype="float16").resolve_dtype(cpu) == torch.float16


def test_tensor_parallel_deadline_and_exit_policy_are_config_fields():
    config = EngineConfig.from_env({"LLMS_TP_TIMEOUT_S": "30", "LLMS_TP_EXIT_ON_FAILURE": "1"})
    assert config.tp_timeout_s == 30.0 and config.tp_exit_on_failure is True
    assert EngineConfig().tp_exit_on_failure is False  # in-process: a rank failure raises, the caller decides
    with pytest.raises(ConfigError, match="tp_timeout_s"):
        EngineConfig(tp_timeout_s=0)
