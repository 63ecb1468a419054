"""``lightllm-struct serve``: the command line of the server.

Engine flags are generated from ``EngineConfig``'s fields, one to one (``max_num_seqs`` -> ``--max-num-seqs``),
so a new config field is a new flag with no code here. A flag left out falls back to its ``LLMS_*``
environment variable, then to the field's default.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Sequence
from typing import Any

from lightllm_struct.config import KERNEL_CHOICES, EngineConfig
from lightllm_struct.errors import LightLLMStructError

_SHORT_ALIASES = {"tensor_parallel_size": ["--tp"]}
_CHOICES = {"device": None, "dtype": ["auto", "float32", "float16", "bfloat16"], "kernels": list(KERNEL_CHOICES)}
_TYPES = {"int": int, "float": float, "str": str}


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
    _add_engine_flags(serve)
    return parser


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
        import os

        from lightllm_struct.distributed.tp_model import EXIT_ON_FAILURE_ENV, run_worker_if_torchrun

        if run_worker_if_torchrun(config):  # torchrun rank > 0: a worker of rank 0's server, not a server
            return
        # A server cannot go on without one of its ranks: report it and exit rather than hang.
        os.environ.setdefault(EXIT_ON_FAILURE_ENV, "1")
    app = build_app(config, served_model_name=args.served_model_name, max_pending=args.max_pending)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, timeout_keep_alive=30)


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
