"""The FastAPI app: OpenAI-compatible routes over one ``AsyncEngine``, plus /health and /metrics."""
from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from lightllm_struct.engine.async_engine import AsyncEngine
from lightllm_struct.server.chat import create_chat_completion
from lightllm_struct.server.completions import create_completion
from lightllm_struct.server.compiles import ServerCompiles
from lightllm_struct.server.errors import check_model, install_error_handlers, parse_json_body
from lightllm_struct.server.metrics import CONTENT_TYPE, ServerMetrics
from lightllm_struct.server.protocol import ModelCard, ModelList
from lightllm_struct.server.security import AccessPolicy, install_access_policy, read_body
from lightllm_struct.server.serving import ServerState
from lightllm_struct.server.tokenize import DetokenizeResponse, TokenizeResponse, detokenize, tokenize
from lightllm_struct.server.turns import TurnSupport


def create_app(engine: AsyncEngine, *, tokenizer: Any, model_name: str, max_model_len: int,
               policy: AccessPolicy | None = None, tool_call_format: str = "auto",
               compiles: ServerCompiles | None = None) -> FastAPI:
    """An app serving ``engine``; the engine thread starts with the app and stops with it.

    Parameters
    ----------
    engine:
        The asyncio front of the engine (not yet started, or already running).
    tokenizer:
        The engine's tokenizer (``encode``, ``apply_chat_template``, ``vocab_size``).
    model_name:
        The id ``/v1/models`` reports and responses carry.
    max_model_len:
        Longest prompt + output of one request, checked before a request reaches the engine.
    policy:
        API key, Host and CORS rules and the body size limit; by default no key, any host, no CORS.
    tool_call_format:
        The tool-call format (``tool_formats.py``), or "auto" to read it from the chat template.
    compiles:
        The server's compile workers (tool-turn grammars, structural tags, tracking grammars); by default two
        workers with the engine's default deadline and limits.

    Raises
    ------
    ConfigError
        An unknown ``tool_call_format``, or one the chat template does not write (``TurnSupport.check_template``).
    """
    policy = policy or AccessPolicy()
    turns = TurnSupport(tokenizer, tool_call_format=tool_call_format, compiles=compiles)
    turns.check_template()
    state = ServerState(engine=engine, tokenizer=tokenizer, model_name=model_name,
                        max_model_len=max_model_len, metrics=ServerMetrics(lambda: {**engine.stats(), **turns.compiles.counters()}), turns=turns)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        if not engine.started:
            engine.start()
        turns.compiles.pool.prestart()  # in the background: the first tool request finds them warm
        yield
        turns.compiles.shutdown()
        engine.shutdown()

    app = FastAPI(title="lightllm-struct", version="0.1.0", lifespan=lifespan)
    app.state.llms = state
    install_error_handlers(app)
    install_access_policy(app, policy)

    async def body_of(request: Request) -> Any:
        body = parse_json_body(await read_body(request, limit=policy.max_body_bytes),
                               request.headers.get("content-type"))
        check_model(body, model_name)
        return body

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        return await create_chat_completion(state, await body_of(request), request)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        return await create_completion(state, await body_of(request), request)

    @app.post("/tokenize")
    async def tokenize_route(request: Request) -> TokenizeResponse:
        return await asyncio.to_thread(tokenize, state, await body_of(request))

    @app.post("/detokenize")
    async def detokenize_route(request: Request) -> DetokenizeResponse:
        return await asyncio.to_thread(detokenize, state, await body_of(request))

    @app.get("/v1/models")
    async def models() -> ModelList:
        return ModelList(data=[ModelCard(id=model_name, max_model_len=max_model_len)])

    @app.get("/health")
    async def health() -> JSONResponse:
        stats = engine.stats()
        alive = engine.dead is None
        body = {"status": "ok" if alive else "dead", "model": model_name, **stats, **turns.compiles.counters()}
        if not alive:
            body["error"] = str(engine.dead)
        return JSONResponse(body, status_code=200 if alive else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(state.metrics.render(), media_type=CONTENT_TYPE)

    return app
