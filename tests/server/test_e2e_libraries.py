"""Real client libraries drive structured output against the real server: instructor (JSON schema and
tools modes) and langchain-openai (``with_structured_output`` by json_schema and by function calling)."""
from __future__ import annotations

import instructor
import langchain_openai
import pytest
from pydantic import BaseModel, Field


class User(BaseModel):
    name: str = Field(max_length=16)
    age: int = Field(ge=0, le=120)


PROMPT = "Extract the user: Alice is 31 years old."


@pytest.mark.parametrize("mode_name", ["JSON_SCHEMA", "TOOLS"])
def test_instructor_returns_a_validated_model(server, openai_client, mode_name):
    client = instructor.from_openai(openai_client, mode=getattr(instructor.Mode, mode_name))
    user = client.chat.completions.create(model=server.model, response_model=User, max_retries=0, max_tokens=80,
                                          temperature=0, messages=[{"role": "user", "content": PROMPT}])
    assert isinstance(user, User)
    User.model_validate(user.model_dump())  # the library parsed it; the schema's bounds hold independently


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_langchain_with_structured_output_returns_a_validated_model(server, method):
    llm = langchain_openai.ChatOpenAI(model=server.model, base_url=server.base_url, api_key="unused",
                                      temperature=0, max_tokens=80, max_retries=0, timeout=300)
    user = llm.with_structured_output(User, method=method).invoke(PROMPT)
    assert isinstance(user, User)
    User.model_validate(user.model_dump())
