"""The API key as the official openai client meets it: a wrong key is its AuthenticationError (401, OpenAI's
error shape), the right one passes."""
from __future__ import annotations

import openai
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from lightllm_struct.server.errors import install_error_handlers
from lightllm_struct.server.protocol import ModelCard, ModelList
from lightllm_struct.server.security import AccessPolicy, install_access_policy


def _openai(api_key: str) -> openai.OpenAI:
    app = FastAPI()
    install_error_handlers(app)
    install_access_policy(app, AccessPolicy(api_key="sekrit"))

    @app.get("/v1/models")
    async def models() -> ModelList:
        return ModelList(data=[ModelCard(id="m")])

    return openai.OpenAI(base_url="http://testserver/v1", api_key=api_key, max_retries=0,
                         http_client=TestClient(app, raise_server_exceptions=False))


def test_openai_client_with_wrong_key_gets_authentication_error():
    with pytest.raises(openai.AuthenticationError) as err:
        _openai("wrong").models.list()
    assert err.value.status_code == 401 and err.value.code == "invalid_api_key"
    assert [m.id for m in _openai("sekrit").models.list()] == ["m"]
