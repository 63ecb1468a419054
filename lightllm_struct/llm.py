"""The offline API: ``LLM().generate(prompts)`` and ``LLM().chat(messages)`` run the engine in-process."""
from __future__ import annotations

from collections.abc import Sequence as Seq
from typing import Any

from lightllm_struct.config import EngineConfig
from lightllm_struct.engine.engine import Engine
from lightllm_struct.errors import InvalidRequestError
from lightllm_struct.request import Constraint, Request, RequestOutput, SamplingParams
from lightllm_struct.shorthand import to_constraint

Prompt = str | list[int]


class LLM:
    """A model loaded for offline generation.

    Parameters
    ----------
    model:
        A GGUF file or HF folder; None = the default model (SmolLM2-135M-Instruct).
    **config:
        Any :class:`~lightllm_struct.config.EngineConfig` field (``max_num_seqs=8``, ``device="cpu"``...);
        ``LLMS_*`` environment variables fill the rest.

    Raises
    ------
    ConfigError, ModelLoadError
        On a bad option or a model that cannot be loaded.
    """

    def __init__(self, model: str | None = None, **config: Any) -> None:
        self.engine = Engine(EngineConfig.from_env(model=model, **config))

    @property
    def tokenizer(self):
        return self.engine.tokenizer

    def generate(self, prompts: Prompt | Seq[Prompt], sampling_params: SamplingParams | Seq[SamplingParams] | None
                 = None, *, schema: Any = None, regex: str | None = None, grammar: str | None = None,
                 choices: Seq[str] | None = None, constraints: Constraint | Seq[Constraint | None] | None = None
                 ) -> list[RequestOutput]:
        """Generate for every prompt (all batched together); outputs come back in the prompts' order.

        Parameters
        ----------
        prompts:
            A string, a list of token ids, or a list of either.
        sampling_params:
            One for all prompts or one per prompt; default ``SamplingParams()``.
        schema, regex, grammar, choices:
            At most one, for every prompt: a JSON schema (a dict, a JSON string or a pydantic class), a regular
            expression, a Lark grammar, or the allowed strings (as :func:`lightllm_struct.generate` takes them).
        constraints:
            The general form instead: one :class:`~lightllm_struct.Constraint` for all prompts or one (or None)
            per prompt.

        Raises
        ------
        InvalidRequestError
            On more than one constraint, a mismatched list length or a request the engine refuses (nothing is
            left running).
        """
        single = isinstance(prompts, str) or (isinstance(prompts, list) and prompts and isinstance(prompts[0], int))
        prompt_list: list[Prompt] = [prompts] if single else list(prompts)
        params = _per_prompt(sampling_params or SamplingParams(), len(prompt_list), SamplingParams, "sampling_params")
        constraints = _one_constraint(constraints, schema=schema, regex=regex, grammar=grammar, choices=choices)
        cons = _per_prompt(constraints, len(prompt_list), Constraint, "constraints")
        requests = [self._request(p, sp, c) for p, sp, c in zip(prompt_list, params, cons)]
        return self._run(requests)

    def chat(self, messages: list[dict] | Seq[list[dict]], sampling_params: SamplingParams | Seq[SamplingParams]
             | None = None, *, tools: list[dict] | None = None, schema: Any = None, regex: str | None = None,
             grammar: str | None = None, choices: Seq[str] | None = None,
             constraints: Constraint | Seq[Constraint | None] | None = None) -> list[RequestOutput]:
        """Generate replies to one conversation (a list of message dicts) or to a list of them.

        The model's chat template renders each conversation with the assistant turn opened; the constraint
        arguments are those of :meth:`generate`.

        Raises
        ------
        InvalidRequestError
            As :meth:`generate`, or a conversation the chat template refuses.
        """
        constraints = _one_constraint(constraints, schema=schema, regex=regex, grammar=grammar, choices=choices)
        single = bool(messages) and isinstance(messages[0], dict)
        conversations = [messages] if single else list(messages)
        prompts = [self.tokenizer.apply_chat_template(m, tools) for m in conversations]
        # The template already holds the special tokens; encoding must not add a second BOS.
        ids = [self.tokenizer.encode(p, add_special_tokens=False) for p in prompts]
        params = _per_prompt(sampling_params or SamplingParams(), len(ids), SamplingParams, "sampling_params")
        cons = _per_prompt(constraints, len(ids), Constraint, "constraints")
        requests = [Request(prompt_token_ids=i, prompt=p, sampling=sp, constraint=c)
                    for i, p, sp, c in zip(ids, prompts, params, cons)]
        return self._run(requests)

    def _request(self, prompt: Prompt, sampling: SamplingParams, constraint: Constraint | None) -> Request:
        if isinstance(prompt, str):
            return Request(prompt_token_ids=self.tokenizer.encode(prompt), prompt=prompt, sampling=sampling,
                           constraint=constraint)
        return Request(prompt_token_ids=list(prompt), sampling=sampling, constraint=constraint)

    def _run(self, requests: list[Request]) -> list[RequestOutput]:
        finals: dict[str, RequestOutput] = {}
        added: list[str] = []
        try:
            for req in requests:
                self.engine.add_request(req)
                added.append(req.request_id)
            while len(finals) < len(requests):
                for out in self.engine.step():
                    if out.finished:
                        finals[out.request_id] = out
        except BaseException:
            for rid in added:
                self.engine.abort_request(rid)
            while self.engine.has_unfinished() and not self.engine.scheduler.has_work():
                self.engine.step()  # drain the aborts' outputs so the next call starts clean
            raise
        return [finals[r.request_id] for r in requests]


def _one_constraint(constraints: Any, **shorthand: Any) -> Any:
    """``constraints``, or the Constraint of the one shorthand argument given (converted as ``generate()``
    converts it)."""
    given = to_constraint(**shorthand)
    if given is not None and constraints is not None:
        raise InvalidRequestError("give either constraints or one of schema, regex, grammar, choices",
                                  param="constraints")
    return constraints if given is None else given


def _per_prompt(value: Any, n: int, kind: type, name: str) -> list:
    if value is None or isinstance(value, kind):
        return [value] * n
    values = list(value)
    if len(values) != n:
        raise InvalidRequestError(f"{name} has {len(values)} entries for {n} prompts", param=name)
    return values
