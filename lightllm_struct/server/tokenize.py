"""``POST /tokenize`` and ``POST /detokenize`` in vLLM's shapes: a prompt (or chat messages, rendered with
the chat template) to token ids, and token ids back to text."""
from __future__ import annotations

from pydantic import Field, StrictBool, StrictInt, StrictStr

from lightllm_struct.errors import InvalidRequestError
from lightllm_struct.server.protocol import ChatMessage, Tool, _Request, _Response
from lightllm_struct.server.serving import ServerState


class TokenizeRequest(_Request):
    model: StrictStr | None = None
    prompt: StrictStr | None = None
    messages: list[ChatMessage] | None = None
    tools: list[Tool] | None = None
    add_generation_prompt: StrictBool = True
    add_special_tokens: StrictBool | None = None  # default: True for a prompt, False for messages (vLLM's)
    return_token_strs: StrictBool = False


class TokenizeResponse(_Response):
    count: int
    max_model_len: int
    tokens: list[int]
    token_strs: list[str] | None = None


class DetokenizeRequest(_Request):
    model: StrictStr | None = None
    tokens: list[StrictInt] = Field(min_length=0)


class DetokenizeResponse(_Response):
    prompt: str


def tokenize(state: ServerState, body: object) -> TokenizeResponse:
    """Token ids of the request's prompt or messages.

    Raises
    ------
    InvalidRequestError
        Neither or both of ``prompt`` and ``messages``.
    """
    req = TokenizeRequest.model_validate(body)
    if (req.prompt is None) == (req.messages is None):
        raise InvalidRequestError("give exactly one of prompt and messages", param="prompt")
    if req.messages is not None:
        messages = [m.model_dump(exclude_none=True) | {"content": m.text()} for m in req.messages]
        tools = [t.model_dump() for t in req.tools] if req.tools else None
        text = state.tokenizer.apply_chat_template(messages, tools,
                                                   add_generation_prompt=req.add_generation_prompt)
        special = bool(req.add_special_tokens)
    else:
        text, special = req.prompt, req.add_special_tokens is not False
    ids = state.tokenizer.encode(text, add_special_tokens=special)
    strs = [state.token_texts.text_of(t) for t in ids] if req.return_token_strs else None
    return TokenizeResponse(count=len(ids), max_model_len=state.max_model_len, tokens=ids, token_strs=strs)


def detokenize(state: ServerState, body: object) -> DetokenizeResponse:
    """The text of the request's token ids.

    Raises
    ------
    InvalidRequestError
        A token id outside the vocabulary.
    """
    req = DetokenizeRequest.model_validate(body)
    vocab = state.tokenizer.vocab_size
    bad = [t for t in req.tokens if not 0 <= t < vocab]
    if bad:
        raise InvalidRequestError(f"token ids out of range [0, {vocab}): {bad[:5]}", param="tokens")
    return DetokenizeResponse(prompt=state.tokenizer.decode(req.tokens))
