"""Prompts are tokenized off the event loop, after a length check that needs no tokenizer (issue 11: a 20 MB
prompt tokenized on the loop froze every route, /health included, for 19 s)."""
from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace

import pytest

from lightllm_struct.errors import PromptTooLongError
from lightllm_struct.server.serving import _MAX_CHARS_PER_TOKEN, encode_off_loop


class SlowTokenizer:
    """Encodes one id a character, taking ``seconds``; records the thread it ran on."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.calls, self.threads = seconds, 0, []

    def encode(self, text: str, **_kwargs) -> list[int]:
        self.calls += 1
        self.threads.append(threading.get_ident())
        time.sleep(self.seconds)
        return [ord(c) for c in text]


def _state(tokenizer, max_model_len: int = 64):
    return SimpleNamespace(tokenizer=tokenizer, max_model_len=max_model_len)


def test_a_slow_tokenization_leaves_the_event_loop_serving():
    tok = SlowTokenizer(1.0)

    async def main() -> tuple[list[int], int]:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        ticker = asyncio.create_task(tick())
        ids = await encode_off_loop(_state(tok), "abc", param="prompt")
        ticker.cancel()
        return ids, ticks

    ids, ticks = asyncio.run(main())
    assert ids == [97, 98, 99] and tok.calls == 1
    assert tok.threads[0] != threading.get_ident()  # not the loop's thread (asyncio.run runs it on this one)
    assert ticks >= 20, f"the loop ran {ticks} times during a 1 s tokenization"


def test_a_text_too_long_for_any_tokenization_is_refused_before_the_tokenizer():
    tok = SlowTokenizer(60.0)
    text = "x" * (64 * _MAX_CHARS_PER_TOKEN + 1)
    start = time.monotonic()
    with pytest.raises(PromptTooLongError) as err:
        asyncio.run(encode_off_loop(_state(tok), text, param="messages"))
    assert tok.calls == 0 and time.monotonic() - start < 5
    assert err.value.param == "messages" and err.value.http_status == 400
