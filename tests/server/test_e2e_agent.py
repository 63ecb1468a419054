"""Agent loops against the default model: the openai client and langchain-openai's ``bind_tools`` run several
turns, each call executed by a local function and its result fed back as a tool message."""
from __future__ import annotations

import json

import jsonschema
import pytest

WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string", "minLength": 1, "maxLength": 12}},
                  "required": ["city"], "additionalProperties": False}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city",
                                           "parameters": WEATHER_SCHEMA}}]


def get_weather(city: str) -> str:
    return f"{city}: sunny, 21 C"


def test_openai_client_tool_loop(server, openai_client):
    messages = [{"role": "user", "content": "What's the weather in Paris and in Rome?"}]
    calls_made = 0
    for turn, choice in enumerate(["required", "required", "auto"]):
        reply = openai_client.chat.completions.create(model=server.model, messages=messages, tools=TOOLS,
                                                      tool_choice=choice, max_tokens=48, temperature=0.0,
                                                      parallel_tool_calls=False).choices[0]
        message = reply.message
        if choice == "required":
            assert reply.finish_reason == "tool_calls" and len(message.tool_calls) == 1
        messages.append(message.model_dump(exclude_none=True))
        for call in message.tool_calls or []:
            args = json.loads(call.function.arguments)
            jsonschema.validate(args, WEATHER_SCHEMA)
            messages.append({"role": "tool", "tool_call_id": call.id, "content": get_weather(**args)})
            calls_made += 1
    assert calls_made >= 2 and messages[-1]["role"] in ("assistant", "tool")


def test_langchain_bind_tools_agent_loop(server):
    langchain_openai = pytest.importorskip("langchain_openai")
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import tool
    from pydantic import BaseModel, ConfigDict, Field

    class City(BaseModel):  # a closed object: the small model cannot wander into extra keys
        model_config = ConfigDict(extra="forbid")
        city: str = Field(min_length=1, max_length=12)

    @tool(args_schema=City)
    def weather(city: str) -> str:
        """Current weather in a city."""
        return get_weather(city)

    llm = langchain_openai.ChatOpenAI(base_url=server.base_url, api_key="unused", model=server.model,
                                      temperature=0.0, max_tokens=48, max_retries=0, timeout=300)
    # strict: langchain keeps "additionalProperties": false only for strict tools
    forced = llm.bind_tools([weather], tool_choice="weather", parallel_tool_calls=False, strict=True)
    free = llm.bind_tools([weather], strict=True)
    history = [HumanMessage("What's the weather in Oslo? Then tell me in one sentence.")]
    executed = 0
    for model in (forced, forced, free):
        ai = model.invoke(history)

        history.append(ai)
        for call in ai.tool_calls:
            assert call["name"] == "weather"
            jsonschema.validate(call["args"], WEATHER_SCHEMA)
            history.append(ToolMessage(weather.invoke(call["args"]), tool_call_id=call["id"]))
            executed += 1
    assert executed >= 2
    assert all(isinstance(m, ToolMessage) for m in history if getattr(m, "tool_call_id", None))
