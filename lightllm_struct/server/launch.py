"""Build a ready-to-run server app from an ``EngineConfig`` (what ``lightllm-struct serve`` runs)."""
from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from lightllm_struct.config import EngineConfig
from lightllm_struct.engine.async_engine import AsyncEngine
from lightllm_struct.server.app import create_app
from lightllm_struct.server.compiles import ServerCompiles
from lightllm_struct.server.security import AccessPolicy

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"


def model_name_of(config: EngineConfig) -> str:
    """The id clients see: the model file or folder name, without a .gguf suffix."""
    if config.model is None:
        return DEFAULT_MODEL_NAME
    path = Path(config.model)
    return path.stem if path.suffix == ".gguf" else path.name


def build_app(config: EngineConfig, *, served_model_name: str | None = None, max_pending: int = 512,
              policy: AccessPolicy | None = None, engine_process: bool = False, warmup: bool = True) -> FastAPI:
    """Load the model and wrap its engine in the HTTP app.

    With ``engine_process`` the engine core runs in its own process (``EngineClient``), started here and
    stopped with the app; otherwise in a thread of this one (``AsyncEngine``), started with the app. Either
    way the engine is built (CUDA graphs captured) and, with ``warmup``, warmed up before this returns, so
    the server answers ``/health`` only once no request pays a compile.

    Raises
    ------
    LightLLMStructError
        If the model cannot be loaded or the configuration is invalid.
    """
    name = served_model_name or model_name_of(config)
    compiles = server_compiles(config)
    if engine_process:
        from lightllm_struct.engine.tokenizer import Tokenizer
        from lightllm_struct.server.engine_client import EngineClient

        client = EngineClient(config, max_pending=max_pending, warmup=warmup)
        info = client.start_process()
        return create_app(client, tokenizer=Tokenizer(info["model_dir"]), model_name=name,
                          max_model_len=info["max_model_len"], policy=policy,
                          tool_call_format=config.tool_call_format, compiles=compiles)
    from lightllm_struct.engine.engine import Engine

    engine = Engine(config)
    if warmup:
        from lightllm_struct.engine.warmup import warm_up

        warm_up(engine)
    return create_app(AsyncEngine(engine, max_pending=max_pending), tokenizer=engine.tokenizer, model_name=name,
                      max_model_len=engine.max_model_len, policy=policy, tool_call_format=config.tool_call_format,
                      compiles=compiles)


def server_compiles(config: EngineConfig) -> ServerCompiles:
    """The server's compile workers under the engine's deadline, memory allowance and size limits."""
    from lightllm_struct.engine.constraint_limits import constraint_limits

    return ServerCompiles(workers=config.grammar_compile_threads, timeout_s=config.grammar_compile_timeout_s,
                          memory_mb=config.grammar_compile_memory_mb, limits=constraint_limits(config),
                          cache_max_bytes=None if config.grammar_tracking_cache_max_mb is None
                          else config.grammar_tracking_cache_max_mb << 20,
                          recycle_mb=config.grammar_compile_worker_recycle_mb)
