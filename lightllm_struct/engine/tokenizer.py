"""Text <-> token ids for the engine: HF ``tokenizers`` from the model folder, its chat template, and
incremental detokenization that never splits a multi-byte character."""
from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer as _HFTokenizer
from tokenizers.decoders import DecodeStream

from lightllm_struct.errors import InvalidRequestError, LightLLMStructError


class TokenizerLoadError(LightLLMStructError):
    """The model folder has no usable tokenizer.json."""


def _token_text(value: Any) -> str | None:
    """tokenizer_config.json writes special tokens as strings or as {"content": ...} objects."""
    if isinstance(value, dict):
        return value.get("content")
    return value


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


class Tokenizer:
    """The model's tokenizer.

    Parameters
    ----------
    model_dir:
        A folder with ``tokenizer.json`` and, optionally, ``tokenizer_config.json`` / ``chat_template.jinja``
        / ``generation_config.json`` (for the chat template and end-of-sequence ids).

    Raises
    ------
    TokenizerLoadError
        If ``tokenizer.json`` is missing or unreadable.
    """

    def __init__(self, model_dir: str | Path) -> None:
        self.model_dir = Path(model_dir)
        try:
            self.backend = _HFTokenizer.from_file(str(self.model_dir / "tokenizer.json"))
        except Exception as exc:  # tokenizers raises plain Exception subclasses
            raise TokenizerLoadError(f"cannot load {self.model_dir / 'tokenizer.json'}: {exc}") from exc
        config = _read_json(self.model_dir / "tokenizer_config.json")
        self.bos_token = _token_text(config.get("bos_token"))
        self.eos_token = _token_text(config.get("eos_token"))
        self.chat_template = self._find_chat_template(config)
        self.vocab_size = self.backend.get_vocab_size(with_added_tokens=True)
        self.eos_token_ids = self._find_eos_ids()
        self._hf: Any = None

    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        # encode_batch releases the GIL while it works; encode holds it: a 2 MB prompt encoded in the server's
        # thread pool froze its event loop (every route, /health included) for seconds (issue 11)
        return self.backend.encode_batch([text], add_special_tokens=add_special_tokens)[0].ids

    def decode(self, token_ids: list[int], *, skip_special_tokens: bool = True) -> str:
        return self.backend.decode(list(token_ids), skip_special_tokens=skip_special_tokens)

    def apply_chat_template(self, messages: list[dict], tools: list[dict] | None = None, *,
                            add_generation_prompt: bool = True, **kwargs: Any) -> str:
        """Render ``messages`` (OpenAI-style dicts) with the model's chat template.

        Raises
        ------
        InvalidRequestError
            If the model has no chat template or the template rejects the messages.
        """
        if self.chat_template is None:
            raise InvalidRequestError("this model has no chat template; use a completion prompt", param="messages")
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = _raise_template_error
        env.globals["strftime_now"] = lambda fmt: datetime.datetime.now().strftime(fmt)
        env.filters["tojson"] = lambda x, indent=None, **_: json.dumps(x, indent=indent, ensure_ascii=False)
        try:
            return env.from_string(self.chat_template).render(
                messages=messages, tools=tools, add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token or "", eos_token=self.eos_token or "", **kwargs)
        except TemplateError as exc:
            raise InvalidRequestError(f"chat template error: {exc}", param="messages") from exc

    def detokenizer(self) -> "IncrementalDetokenizer":
        return IncrementalDetokenizer(self)

    @property
    def hf_tokenizer(self) -> Any:
        """A transformers ``PreTrainedTokenizerFast`` over the same files (built once, on first use)."""
        if self._hf is None:
            from transformers import PreTrainedTokenizerFast

            self._hf = PreTrainedTokenizerFast(tokenizer_object=self.backend, eos_token=self.eos_token,
                                               bos_token=self.bos_token)
        return self._hf

    def _find_chat_template(self, config: dict) -> str | None:
        path = self.model_dir / "chat_template.jinja"
        if path.is_file():
            return path.read_text()
        template = config.get("chat_template")
        if isinstance(template, list):  # named templates: [{"name": "default", "template": ...}, ...]
            named = {t.get("name"): t.get("template") for t in template}
            template = named.get("default") or next(iter(named.values()), None)
        return template

    def _find_eos_ids(self) -> list[int]:
        ids: list[int] = []
        for name in (self.eos_token,):
            tid = self.backend.token_to_id(name) if name else None
            if tid is not None:
                ids.append(tid)
        for source in ("generation_config.json", "config.json"):
            eos = _read_json(self.model_dir / source).get("eos_token_id")
            for tid in eos if isinstance(eos, list) else [eos]:
                if isinstance(tid, int) and tid not in ids:
                    ids.append(tid)
        return ids


def _raise_template_error(message: str) -> None:
    raise TemplateError(message)


class IncrementalDetokenizer:
    """Turns one request's output tokens into text as they come.

    A character split across tokens (UTF-8 bytes, byte-fallback tokens) is emitted only once complete, so
    streamed text never contains a spurious replacement character.
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tokenizer = tokenizer
        self._stream = DecodeStream(skip_special_tokens=True)

    def step(self, token_id: int) -> str:
        """The new text this token completes (possibly empty)."""
        return self._stream.step(self._tokenizer.backend, token_id) or ""
