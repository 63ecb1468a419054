"""Pydantic models of the OpenAI HTTP API subset the server speaks.

Requests are validated here, at the edge: a wrong type or an out-of-range value becomes a 400 in OpenAI's
error shape (see ``errors.py``) before anything reaches the engine. Unknown fields are ignored, as OpenAI's
own clients send fields (``user``, ``metadata``) that change nothing for us; fields we *cannot* honour
(``best_of``, ``suffix``) are rejected explicitly instead of being silently dropped.
"""
from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, model_validator

from lightllm_struct.errors import InvalidRequestError


MAX_N = 16  # choices of one prompt
MAX_CHOICES = 64  # choices of one request, over all its prompts


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Response(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------- request parts
class JSONSchemaSpec(_Request):
    name: StrictStr = "response"
    description: StrictStr | None = None
    # ``schema`` shadows a BaseModel attribute, hence the alias.
    schema_: dict[str, Any] | StrictBool = Field(default=None, alias="schema")
    strict: StrictBool | None = None

    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class ResponseFormat(_Request):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaSpec | None = None

    @model_validator(mode="after")
    def _schema_present(self) -> ResponseFormat:
        if self.type == "json_schema" and (self.json_schema is None or self.json_schema.schema_ is None):
            raise ValueError("response_format of type 'json_schema' needs json_schema.schema")
        return self


class StructuredOutputs(_Request):
    """vLLM's extra-body constraint field: exactly one of its members."""

    json_: dict[str, Any] | StrictStr | StrictBool | None = Field(default=None, alias="json")
    regex: StrictStr | None = None
    grammar: StrictStr | None = None
    choice: list[StrictStr] | None = None
    structural_tag: dict[str, Any] | StrictStr | None = None  # vLLM's / xgrammar's shape, see structural_tag.py

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _exactly_one(self) -> StructuredOutputs:
        given = [k for k in ("json_", "regex", "grammar", "choice", "structural_tag") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("structured_outputs needs exactly one of json, regex, grammar, choice, structural_tag")
        if self.choice is not None and not self.choice:
            raise ValueError("structured_outputs.choice must not be empty")
        return self


class StreamOptions(_Request):
    include_usage: StrictBool = False


class FunctionDef(_Request):
    name: StrictStr = Field(pattern=r"^[A-Za-z0-9_\-]{1,64}$")
    description: StrictStr | None = None
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: StrictBool | None = None


class Tool(_Request):
    type: Literal["function"]
    function: FunctionDef


class NamedFunction(_Request):
    name: StrictStr


class NamedToolChoice(_Request):
    type: Literal["function"]
    function: NamedFunction


class ToolCallFunction(_Request):
    name: StrictStr
    arguments: StrictStr


class ToolCallIn(_Request):
    id: StrictStr | None = None
    type: Literal["function"] = "function"
    function: ToolCallFunction


class ContentPart(_Request):
    type: Literal["text"]
    text: StrictStr


class ChatMessage(_Request):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: StrictStr | list[ContentPart] | None = None
    name: StrictStr | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: StrictStr | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


# ---------------------------------------------------------------- requests
class _SamplingRequest(_Request):
    model: StrictStr | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: StrictInt | None = Field(default=None, ge=0)
    seed: StrictInt | None = None
    stop: StrictStr | list[StrictStr] | None = None
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    n: StrictInt = Field(default=1, ge=1, le=MAX_N)
    best_of: StrictInt | None = None
    logprobs_mode: Literal["processed_logprobs", "raw_logprobs"] = "processed_logprobs"
    response_format: ResponseFormat | None = None
    structured_outputs: StructuredOutputs | None = None
    ignore_eos: StrictBool = False
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    repetition_penalty: float | None = Field(default=None, gt=0, le=100)
    logit_bias: dict[StrictStr, float] | None = None
    min_tokens: StrictInt = Field(default=0, ge=0)
    min_p: float | None = Field(default=None, ge=0, le=1)
    stop_token_ids: list[StrictInt] | None = None
    # Extension: "report" compiles a JSON schema without the keywords that cannot be enforced and names them
    # (JSON pointers) in the response's ``lightllm_struct.unsupported``; "refuse" (default) answers 400.
    unsupported: Literal["refuse", "report"] = "refuse"

    @model_validator(mode="after")
    def _one_constraint(self) -> _SamplingRequest:
        if self.structured_outputs is not None and self.response_format is not None \
                and self.response_format.type != "text":
            raise ValueError("give either response_format or structured_outputs, not both")
        return self

    @model_validator(mode="after")
    def _no_best_of(self) -> _SamplingRequest:
        if self.best_of is not None and self.best_of != self.n:
            raise InvalidRequestError("best_of is not supported; ask for n choices and rank them yourself "
                                      "(with logprobs)", param="best_of")
        return self

    @model_validator(mode="after")
    def _logit_bias_keys(self) -> _SamplingRequest:
        bad = [k for k in self.logit_bias or {} if not (k.isascii() and k.isdigit())]
        if bad:
            raise InvalidRequestError(f"logit_bias keys must be token ids, got {bad[0]!r}", param="logit_bias")
        return self

    def logit_bias_ids(self) -> dict[int, float]:
        """``logit_bias`` with its keys (JSON object keys: strings) as token ids."""
        return {int(key): bias for key, bias in (self.logit_bias or {}).items()}

    def stop_list(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class ChatCompletionRequest(_SamplingRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: StrictInt | None = Field(default=None, ge=1)
    max_completion_tokens: StrictInt | None = Field(default=None, ge=1)
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: StrictBool = True
    logprobs: StrictBool | None = None
    top_logprobs: StrictInt | None = Field(default=None, ge=0, le=20)
    # Reasoning models: a bound on the reasoning section (see grammar/structural/markers.py for its unit).
    max_reasoning_tokens: StrictInt | None = Field(default=None, ge=1, le=1 << 16)
    chat_template_kwargs: dict[str, Any] | None = None  # e.g. {"enable_thinking": false} for Qwen3

    @model_validator(mode="after")
    def _top_logprobs_need_logprobs(self) -> ChatCompletionRequest:
        if self.top_logprobs and not self.logprobs:
            raise InvalidRequestError("top_logprobs needs logprobs set to true", param="top_logprobs")
        return self

    def num_logprobs(self) -> int | None:
        return (self.top_logprobs or 0) if self.logprobs else None

    @model_validator(mode="after")
    def _tools_consistent(self) -> ChatCompletionRequest:
        if self.tools is not None and not self.tools:
            raise InvalidRequestError("tools must not be empty; leave it out instead", param="tools")
        if isinstance(self.tool_choice, NamedToolChoice):
            names = {t.function.name for t in self.tools or []}
            if self.tool_choice.function.name not in names:
                raise InvalidRequestError(
                    f"tool_choice names function {self.tool_choice.function.name!r}, "
                    f"which is not among the tools ({sorted(names)})", param="tool_choice")
        elif self.tool_choice in ("required", "auto") and not self.tools:
            raise InvalidRequestError(f"tool_choice {self.tool_choice!r} needs tools", param="tool_choice")
        return self

    def effective_tool_choice(self) -> str | NamedToolChoice:
        if self.tool_choice is not None:
            return self.tool_choice
        return "auto" if self.tools else "none"


class CompletionRequest(_SamplingRequest):
    prompt: StrictStr | list[StrictStr] | list[StrictInt] | list[list[StrictInt]] = Field(min_length=1)
    max_tokens: StrictInt = Field(default=16, ge=1)
    echo: StrictBool = False
    logprobs: StrictInt | None = Field(default=None, ge=0, le=20)
    suffix: StrictStr | None = None

    @model_validator(mode="after")
    def _no_suffix(self) -> CompletionRequest:
        if self.suffix is not None:
            raise InvalidRequestError("suffix (fill-in-the-middle) is not supported", param="suffix")
        if len(self.prompts()) * self.n > MAX_CHOICES:
            raise InvalidRequestError(f"prompts times n must be at most {MAX_CHOICES}", param="prompt")
        return self

    def prompts(self) -> list[str | list[int]]:
        """One entry a prompt: its text or its token ids."""
        p = self.prompt
        if isinstance(p, str) or (p and isinstance(p[0], int)):
            return [p]
        return list(p)


# ---------------------------------------------------------------- responses
def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


class Usage(_Response):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class FunctionCall(_Response):
    name: str
    arguments: str


class ToolCall(_Response):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class AssistantMessage(_Response):
    role: Literal["assistant"] = "assistant"
    content: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[ToolCall] | None = None


class TopLogprob(_Response):
    token: str
    logprob: float
    bytes: list[int] | None


class ChatTokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChatLogprobs(_Response):
    content: list[ChatTokenLogprob] | None
    refusal: list[ChatTokenLogprob] | None = None


class CompletionLogprobs(_Response):
    tokens: list[str]
    token_logprobs: list[float | None]
    top_logprobs: list[dict[str, float] | None]
    text_offset: list[int]


class ChatChoice(_Response):
    index: int = 0
    message: AssistantMessage
    finish_reason: str | None
    logprobs: ChatLogprobs | None = None


class StructReport(_Response):
    """The ``lightllm_struct`` extension of a response: the schema keywords compiled without, by JSON pointer
    (``unsupported="report"`` requests; present only when something was left out)."""

    unsupported: list[str]

    @classmethod
    def of(cls, outs: list) -> StructReport | None:
        """The report over a response's outputs (``RequestOutput``s), or None when nothing was left out."""
        pointers = list(dict.fromkeys(p for out in outs for p in out.unsupported))
        return cls(unsupported=pointers) if pointers else None


class ChatCompletion(_Response):
    id: str = Field(default_factory=lambda: new_id("chatcmpl"))
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[ChatChoice]
    usage: Usage
    lightllm_struct: StructReport | None = None

    def body(self) -> dict:
        """The JSON body; the extension only when it says something."""
        return self.model_dump(exclude=None if self.lightllm_struct else {"lightllm_struct"})


class FunctionCallDelta(_Response):
    name: str | None = None
    arguments: str | None = None


class ToolCallDelta(_Response):
    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: FunctionCallDelta


class ChatDelta(_Response):
    role: Literal["assistant"] | None = None
    content: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None


class ChatChunkChoice(_Response):
    index: int = 0
    delta: ChatDelta
    finish_reason: str | None = None
    logprobs: ChatLogprobs | None = None


class ChatCompletionChunk(_Response):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: Usage | None = None


class CompletionChoice(_Response):
    index: int = 0
    text: str
    finish_reason: str | None
    logprobs: CompletionLogprobs | None = None


class Completion(_Response):
    id: str = Field(default_factory=lambda: new_id("cmpl"))
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None
    lightllm_struct: StructReport | None = None

    def body(self) -> dict:
        """The JSON body; the extension only when it says something."""
        return self.model_dump(exclude=None if self.lightllm_struct else {"lightllm_struct"})


class ModelCard(_Response):
    id: str
    object: Literal["model"] = "model"
    created: int = Field(default_factory=lambda: int(time.time()))
    owned_by: str = "lightllm-struct"
    max_model_len: int | None = None


class ModelList(_Response):
    object: Literal["list"] = "list"
    data: list[ModelCard]
