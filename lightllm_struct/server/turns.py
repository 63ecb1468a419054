"""What the server keeps for turns with tools or reasoning: their format, the tracking grammars, token bytes.

Tracking needs the turn's grammar as the engine compiled it, but no token masks: it is compiled once more,
against a 256-byte vocabulary (the lexers and LR tables are the same, and cheap without a real vocabulary),
cached by grammar text, in the server's compile workers (``compiles.py``). At start-up ``check_template`` renders a sample turn with the
model's own template and requires the grammar built for it to accept it.
"""
from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from typing import Any

from lightllm_struct.config import ConfigError
from lightllm_struct.grammar.structural import RegionTracker, TurnGrammar
from lightllm_struct.server.compiles import ServerCompiles
from lightllm_struct.server.protocol import ChatCompletionRequest
from lightllm_struct.server.tools import ChatFormat
from lightllm_struct.server.turn_parser import TurnParser

_END_MARKERS = ("<|im_end|>", "<|eot_id|>", "<|eom_id|>", "</s>", "<|end|>", "<|endoftext|>", "<|return|>")
_SAMPLE_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
_SAMPLE_CALL = {"id": "abcDEF123", "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}


class TurnSupport:
    """Per-server state of tool and reasoning turns.

    Parameters
    ----------
    tokenizer:
        The engine's tokenizer.
    tool_call_format:
        A format name or "auto" (from the chat template).
    cache_size:
        Tracking grammars kept.

    Raises
    ------
    ConfigError
        An unknown format name.
    """

    def __init__(self, tokenizer: Any, *, tool_call_format: str = "auto", cache_size: int = 64,
                 compiles: ServerCompiles | None = None) -> None:
        self.chat = ChatFormat.of(tokenizer, tool_call_format)
        self.compiles = compiles or ServerCompiles(cache_size=cache_size)
        self.tokenizer = tokenizer
        self._cache: OrderedDict[str, Any] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._compiler = None
        self._token_bytes: tuple[list[bytes], frozenset[int]] | None = None

    def tracking_grammar(self, lark: str) -> Any:
        """The compiled grammar a tracker walks, compiled here (blocking; cached): for the start-up template
        check only, whose grammar is our own; a request's tracking grammar compiles in a worker."""
        with self._lock:
            grammar = self._cache.get(lark)
            if grammar is not None:
                self._cache.move_to_end(lark)
                return grammar
            if self._compiler is None:
                from lightllm_struct.grammar import GrammarCompiler, TokenizerInfo

                info = TokenizerInfo.from_vocab([bytes([b]) for b in range(256)] + [b""], eos_token_ids=[256])
                # the engine compiled this grammar within its deadline; this is the same work minus masks
                self._compiler = GrammarCompiler(info, compile_timeout_s=120.0)
        grammar = self._compiler.compile_lark(lark)
        with self._lock:
            self._cache[lark] = grammar
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return grammar

    def _tokens(self) -> tuple[list[bytes], frozenset[int]]:
        if self._token_bytes is None:
            from lightllm_struct.grammar.vocab.huggingface import vocab_from_huggingface

            vocab, _, special = vocab_from_huggingface(self.tokenizer.backend)
            skip = frozenset(special) | frozenset(self.tokenizer.eos_token_ids)
            self._token_bytes = (vocab, skip)
        return self._token_bytes

    async def parser(self, turn: TurnGrammar) -> TurnParser:
        """A parser for one output of ``turn`` (compiles its tracking grammar in a thread when new)."""
        grammar = await self.compiles.tracking_grammar(turn.lark)
        vocab, skip = await asyncio.to_thread(self._tokens)
        tracker = RegionTracker(grammar, turn.regions, turn.strips)
        self.compiles.users.add(grammar, tracker)  # kept in the cache while this turn is parsed
        return TurnParser(tracker, turn.names, token_bytes=vocab, skip=skip, new_id=self.chat.fmt.new_id)

    def check_template(self) -> None:
        """Render a sample turn with a tool call with the model's own template; the turn grammar must accept it.

        Templates without a tools section are not checked: the calls in their prompts are ours.

        Raises
        ------
        ConfigError
            The template writes calls (or reasoning) the grammar of the chosen format does not accept.
        """
        if not self.chat.native_tools:
            return
        req = ChatCompletionRequest.model_validate({
            "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
            "tools": [_SAMPLE_TOOL], "tool_choice": "required"})
        prompt = self.chat.render(req)
        generated = self._sample_generation(req, prompt)
        turn = self.chat.turn(req, prompt, None)
        tracker = RegionTracker(self.tracking_grammar(turn.lark), turn.regions, turn.strips)
        try:
            tracker.feed(generated.encode())
            complete = tracker.is_complete()
        except Exception as exc:  # noqa: BLE001 -- any refusal is the same start-up error
            complete, why = False, str(exc)
        else:
            why = "the grammar expects more"
        if not complete:
            raise ConfigError(
                f"tool call format {self.chat.fmt.name!r} does not match the chat template: the template writes "
                f"a call as {generated!r}, which that format's grammar refuses ({why}); pick the right one "
                "with --tool-call-format", param="tool_call_format")

    def _sample_generation(self, req: ChatCompletionRequest, prompt: str) -> str:
        assistant: dict[str, Any] = {"role": "assistant", "content": "", "tool_calls": [_SAMPLE_CALL]}
        if self.chat.reasoning_of(prompt, None) is not None:
            assistant["reasoning_content"] = "The user wants the weather."
        full_req = req.model_copy(update={"messages": [*req.messages, _message(assistant)]})
        messages = self.chat.messages(full_req)
        messages[-1]["reasoning_content"] = assistant.get("reasoning_content")
        full = self.tokenizer.apply_chat_template(messages, tools=[_SAMPLE_TOOL], add_generation_prompt=False)
        if not full.startswith(prompt):
            raise ConfigError("the chat template does not render an assistant turn after its generation "
                              f"prompt {prompt[-40:]!r}; cannot check the tool call format",
                              param="tool_call_format")
        generated = full[len(prompt):]
        ends = [generated.find(m) for m in (self.tokenizer.eos_token, *_END_MARKERS) if m and m in generated]
        return generated[:min(ends)] if ends else generated.rstrip()


def _message(data: dict[str, Any]):
    from lightllm_struct.server.protocol import ChatMessage

    return ChatMessage.model_validate({k: v for k, v in data.items() if k != "reasoning_content"})
