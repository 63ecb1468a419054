"""``lightllm-struct serve``: the command line of the server.

Engine flags are generated from ``EngineConfig``'s fields, one to one (``max_num_seqs`` -> ``--max-num-seqs``),
so a new config field is a new flag with no code here. A flag left out falls back to its ``LLMS_*``
environment variable, then to the field's default.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from lightllm_struct.config import ENV_PREFIX, KERNEL_CHOICES, ConfigError, EngineConfig
from lightllm_struct.errors import LightLLMStructError
from lightllm_struct.server.security import DEFAULT_MAX_BODY_BYTES, AccessPolicy

_SHORT_ALIASES = {"tensor_parallel_size": ["--tp"]}
_CHOICES = {"device": None, "dtype": ["auto", "float32", "float16", "bfloat16"], "kernels": list(KERNEL_CHOICES)}
_TYPES = {"int": int, "float": float, "str": str}
_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_MAX_HEADER_BYTES = 64 << 10  # request line + headers: an OpenAI request's are well under 8 KB


def _field_type(field: dataclasses.Field) -> Any:
    """The Python type of a config field from its (string) annotation: ``int | None`` -> int."""
    names = [part.strip() for part in str(field.type).split("|")]
    names = [n for n in names if n != "None"]
    return bool if names == ["bool"] else _TYPES.get(names[0], str)


def _add_engine_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("engine (EngineConfig fields; default: LLMS_<FIELD> or the built-in)")
    for field in dataclasses.fields(EngineConfig):
        flags = ["--" + field.name.replace("_", "-"), *_SHORT_ALIASES.get(field.name, [])]
        kind = _field_type(field)
        help_text = f"default {field.default!r}"
        if kind is bool:
            group.add_argument(*flags, dest=field.name, action=argparse.BooleanOptionalAction, default=None,
                               help=help_text)
        else:
            group.add_argument(*flags, dest=field.name, type=kind, default=None, help=help_text,
                               choices=_CHOICES.get(field.name), metavar=field.name.upper())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lightllm-struct",
                                     description="LLM serving built for structured generation")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve a model over an OpenAI-compatible HTTP API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--served-model-name", default=None,
                       help="the model id clients send and see (default: derived from --model)")
    serve.add_argument("--max-pending", type=int, default=512,
                       help="requests in flight beyond which the server answers 503")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--engine-process", action=argparse.BooleanOptionalAction, default=None,
                       help="run the engine core in its own process, apart from HTTP (default: on, except with "
                            "tensor parallelism, whose ranks are started by torchrun)")
    serve.add_argument("--warmup", action=argparse.BooleanOptionalAction, default=True,
                       help="warm the kernels and the grammar machinery up before serving")
    _add_server_limits(serve)
    _add_engine_flags(serve)
    return parser


def _add_server_limits(serve: argparse.ArgumentParser) -> None:
    group = serve.add_argument_group("access and limits")
    group.add_argument("--api-key", default=None,
                       help="require 'Authorization: Bearer KEY' (default: LLMS_API_KEY; none = no key)")
    group.add_argument("--allowed-hosts", default=None,
                       help="comma-separated Host header values served (default: any)")
    group.add_argument("--allowed-origins", default=None,
                       help="comma-separated origins given CORS access (default: none, CORS off)")
    group.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES,
                       help="largest request body read; larger ones get 413")
    group.add_argument("--limit-concurrency", type=int, default=1024,
                       help="open connections plus tasks beyond which new requests get 503")
    group.add_argument("--timeout-keep-alive", type=int, default=30,
                       help="seconds an idle keep-alive connection is held open")
    group.add_argument("--timeout-header", type=float, default=10.0,
                       help="seconds a connection has to send a complete request head (slowloris guard)")
    group.add_argument("--timeout-idle", type=float, default=30.0,
                       help="seconds a request body may stop arriving before its connection is closed")
    group.add_argument("--max-connections", type=int, default=1024,
                       help="open connections beyond which new ones get a 503 and are closed at once")
    group.add_argument("--allow-public-without-key", action="store_true",
                       help="serve a non-loopback --host without an API key (otherwise refused)")


def _csv(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(p.strip() for p in text.split(",") if p.strip())


def access_policy(args: argparse.Namespace) -> AccessPolicy:
    """The server's access rules from the flags (the key also from ``LLMS_API_KEY``).

    Raises
    ------
    ConfigError
        A non-loopback ``--host`` without a key and without ``--allow-public-without-key``.
    """
    key = args.api_key if args.api_key is not None else os.environ.get(ENV_PREFIX + "API_KEY") or None
    if key is None and args.host not in _LOOPBACK and not args.allow_public_without_key:
        raise ConfigError(f"refusing to serve {args.host} without an API key: set --api-key (or LLMS_API_KEY), "
                          "or pass --allow-public-without-key")
    return AccessPolicy(api_key=key, allowed_hosts=_csv(args.allowed_hosts),
                        allowed_origins=_csv(args.allowed_origins), max_body_bytes=args.max_body_bytes)


def engine_config(args: argparse.Namespace) -> EngineConfig:
    """The EngineConfig of the parsed flags: given flags win over LLMS_* variables, which win over defaults."""
    names = {f.name for f in dataclasses.fields(EngineConfig)}
    given = {name: value for name, value in vars(args).items() if name in names and value is not None}
    return EngineConfig.from_env(**given)


def serve(args: argparse.Namespace) -> None:
    import uvicorn

    from lightllm_struct.server.launch import build_app

    config = engine_config(args)
    if config.tensor_parallel_size > 1:
        from lightllm_struct.distributed.tp_model import run_worker_if_torchrun

        if run_worker_if_torchrun(config):  # torchrun rank > 0: a worker of rank 0's server, not a server
            return
        # A server cannot go on without one of its ranks: report it and exit rather than hang (unless the
        # flag or LLMS_TP_EXIT_ON_FAILURE says otherwise).
        if args.tp_exit_on_failure is None and ENV_PREFIX + "TP_EXIT_ON_FAILURE" not in os.environ:
            config = dataclasses.replace(config, tp_exit_on_failure=True)
    policy = access_policy(args)
    engine_process = config.tensor_parallel_size == 1 if args.engine_process is None else args.engine_process
    app = build_app(config, served_model_name=args.served_model_name, max_pending=args.max_pending,
                    policy=policy, engine_process=engine_process, warmup=args.warmup)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, **uvicorn_options(args))


def uvicorn_options(args: argparse.Namespace) -> dict:
    """uvicorn's settings of the limit flags: its own timeouts and caps, plus the connection guards
    (``server/connections.py``); the open-file limit is raised so the cap, not fd exhaustion, refuses first.

    Raises
    ------
    ConfigError
        A timeout that is not positive or a cap below 1.
    """
    from lightllm_struct.server.connections import guarded_protocol, raise_open_file_limit

    raise_open_file_limit(args.max_connections)
    protocol = guarded_protocol(header_timeout_s=args.timeout_header, idle_timeout_s=args.timeout_idle,
                                max_connections=args.max_connections)
    return {"http": protocol, "timeout_keep_alive": args.timeout_keep_alive,
            "limit_concurrency": args.limit_concurrency, "h11_max_incomplete_event_size": _MAX_HEADER_BYTES}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "serve":
            serve(args)
    except LightLLMStructError as exc:
        print(f"lightllm-struct: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
