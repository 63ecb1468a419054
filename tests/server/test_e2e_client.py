"""``generate(prompt, schema=PydanticModel)`` returns a model instance, over HTTP and in-process."""
from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel, Field

from lightllm_struct import agenerate, generate, generate_batch
from lightllm_struct.client import ServerError


class Pet(BaseModel):
    name: str = Field(min_length=1, max_length=10)
    legs: int = Field(ge=0, le=8)
    kind: str = Field(json_schema_extra={"enum": ["cat", "dog", "bird"]})


PROMPT = "Describe a pet as JSON."


def _valid(pet) -> None:
    assert isinstance(pet, Pet)
    Pet.model_validate(pet.model_dump())  # the instance satisfies every field constraint
    assert pet.kind in ("cat", "dog", "bird")


def test_generate_over_http_returns_a_pydantic_instance(server):
    _valid(generate(PROMPT, schema=Pet, base_url=server.url, model=server.model, max_tokens=60, temperature=0))


def test_agenerate_and_batch_over_http(server):
    pet = asyncio.run(agenerate(PROMPT, schema=Pet, base_url=server.base_url, max_tokens=60, temperature=1.0,
                                seed=1))
    _valid(pet)
    words = generate_batch(["Pick a colour.", "Pick another colour."], choices=["red", "green", "blue"],
                           base_url=server.url, max_tokens=4)
    assert len(words) == 2 and set(words) <= {"red", "green", "blue"}


def test_server_errors_are_typed(server):
    with pytest.raises(ServerError) as err:
        generate(PROMPT, regex="(unclosed", base_url=server.url, max_tokens=4)
    assert err.value.http_status == 400 and err.value.param == "structured_outputs.regex"


@pytest.mark.slow
def test_generate_in_process_returns_a_pydantic_instance():
    # No base_url: the default model is loaded into this process (once) and run through ``LLM``.
    _valid(generate(PROMPT, schema=Pet, max_tokens=60, temperature=0))
