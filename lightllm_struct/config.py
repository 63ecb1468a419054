"""The engine's configuration: one frozen dataclass, validated on construction, overridable by LLMS_* env vars.

CLI flags map one to one onto these fields (``--max-num-seqs`` -> ``max_num_seqs``); the environment variable
for a field is ``LLMS_`` + its upper-case name (``LLMS_MAX_NUM_SEQS``). Explicit arguments win over the
environment, which wins over the defaults.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lightllm_struct.errors import LightLLMStructError

if TYPE_CHECKING:
    import torch

ENV_PREFIX = "LLMS_"
KERNEL_CHOICES = ("auto", "torch", "triton")


class ConfigError(LightLLMStructError):
    """An engine configuration value is out of range or of the wrong type."""

    http_status = 500
    error_type = "config_error"


# The names of server/tool_formats.py's FORMATS (a test keeps the two lists equal).
TOOL_CALL_FORMATS = ("auto", "hermes", "llama3_json", "mistral")


@dataclass(frozen=True, kw_only=True)
class EngineConfig:
    """Everything the engine needs to know before it loads a model.

    Attributes
    ----------
    model:
        A GGUF file or an HF-format folder; None = the default model (SmolLM2-135M-Instruct).
    device:
        "auto" (CUDA when available), "cpu" or "cuda".
    dtype:
        "auto" (float32 on CPU, bfloat16 on CUDA), "float32", "float16" or "bfloat16".
    kernels:
        Which implementations run attention, the layers' fused ops (RMSNorm, RoPE, SiLU-and-mul) and sampling:
        "torch", "triton", or "auto" (Triton on CUDA when it is installed, torch elsewhere).
    max_num_seqs:
        Most requests decoded together in one step.
    max_num_batched_tokens:
        Token budget of one step (decode tokens + prefill chunks).
    max_model_len:
        Longest prompt + output of one request; None = the model's context, capped by the KV pool.
    num_kv_slots:
        Size of the token-level KV pool; None = derived from ``kv_cache_memory_gb``.
    kv_cache_memory_gb:
        Memory given to the KV pool when ``num_kv_slots`` is None; None = 0.5 GB on CPU and
        ``gpu_memory_utilization`` of the free GPU memory on CUDA.
    tp_timeout_s:
        Deadline of the tensor-parallel ranks' start-up and of each collective: a hung rank becomes an error.
    tp_exit_on_failure:
        When a tensor-parallel rank fails, end this process (what ``serve`` wants: it cannot go on without
        the rank) instead of raising ``RankFailure`` from the next step.
    enable_prefix_caching:
        Share KV of common prompt prefixes through a radix tree.
    enable_chunked_prefill:
        Split prompts longer than the step's remaining budget across steps.
    prefill_budget_while_decoding:
        Prefill work one step may do while other requests decode, so that a long prompt is spread over steps
        and the streams' token gaps stay bounded; in token-equivalents: a chunk of n tokens after c computed
        ones counts ``n * (1 + (c + n) / prefill_attention_context)`` (its attention reads the whole context).
        None = 256 on the CPU (about 0.4 s of prefill a step for the default model on one thread), unbounded
        on CUDA (chunks of the full step budget take milliseconds there and keep the GPU busy). Needs
        ``enable_chunked_prefill`` (``engine/prefill_budget.py``).
    prefill_attention_context:
        The context length at which one token's attention costs about as much as the rest of its layers
        (about 2,000 for the default model on the CPU); smaller weighs long contexts more.
    grammar_compile_threads, grammar_compile_timeout_s, grammar_cache_size:
        The grammar compile pool: its worker processes, each compile's deadline, and the LRU size of compiled grammars.
    grammar_max_spec_bytes, grammar_max_choices, grammar_max_enum_values, grammar_max_schema_depth, \
    grammar_max_schema_nodes:
        Size limits a constraint must meet before compiling starts (413 beyond): its text in bytes, choice
        entries, one enum's values, schema nesting and schema objects (``engine/constraint_limits.py``).
    grammar_cache_max_mb, grammar_tracking_cache_max_mb:
        Bytes (estimated by ``CompiledGrammar.nbytes``, masks included) of the engine's compiled grammars and of
        the server's tool-call tracking grammars kept; least recently used ones that no request uses go first
        (None: bound by entries only). A tool of 250 optional parameters compiles to about 100 MB.
    grammar_compile_worker_recycle_mb:
        A compile worker whose memory grew this many MB past its set-up is replaced after its job (None: never).
    grammar_compile_memory_mb:
        Memory a compile worker process may add to its set-up; a compile needing more fails with a 413-type
        error (None: unlimited).
    grammar_mask_budget_s:
        Longest one request's token mask may take in a step; a request over it fails with a 413-type error
        instead of stalling every other request of the batch at each token.
    enable_cuda_graphs:
        Replay decode steps as captured CUDA graphs (on CUDA, when the attention backend supports them: Triton).
    enable_jump_forward:
        Append the tokens a grammar forces (``{"name":"``) without sampling them one step at a time. None
        (default) = on. Where CUDA graphs replay decode steps, the forced tokens run in a captured multi-token
        decode (``cuda_graph_tokens_per_seq``), so a batch never drops to an eager step because of them.
    cuda_graph_tokens_per_seq:
        Most new tokens one sequence computes in a captured decode step (its sampled token plus forced
        ones): graphs are captured for 1, 2, 4, ... up to it, and a longer forced run takes several steps.
    overlap:
        Overlap the host with the device: step t+1's forward is queued before step t's tokens are read, and
        the host records them (and fills t+1's grammar masks) while it runs. None (default) = on for CUDA.
    num_threads:
        torch CPU threads; None = min(cores - 1, 4) (at least 1): one core stays free for the rest.
    output_history_size:
        How many finished output lengths feed the admission estimate of future memory.
    tool_call_format:
        How the model writes tool calls: "auto" (read from the chat template), "hermes" (Qwen2.5/Qwen3/Hermes
        ``<tool_call>``), "llama3_json" or "mistral" (``server/tool_formats.py``).
    """

    model: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    kernels: str = "auto"
    max_num_seqs: int = 32
    max_num_batched_tokens: int = 2048
    max_model_len: int | None = None
    num_kv_slots: int | None = None
    kv_cache_memory_gb: float | None = None
    gpu_memory_utilization: float = 0.85
    tensor_parallel_size: int = 1
    tp_timeout_s: float = 120.0
    tp_exit_on_failure: bool = False
    enable_prefix_caching: bool = True
    enable_chunked_prefill: bool = True
    prefill_budget_while_decoding: int | None = None
    prefill_attention_context: int = 2048
    enable_cuda_graphs: bool = True
    enable_jump_forward: bool | None = None
    cuda_graph_tokens_per_seq: int = 8
    overlap: bool | None = None
    grammar_compile_threads: int = 2
    grammar_compile_timeout_s: float = 30.0
    grammar_cache_size: int = 128
    grammar_mask_budget_s: float = 1.0
    grammar_compile_memory_mb: int | None = 4096
    grammar_cache_max_mb: int | None = 256
    grammar_tracking_cache_max_mb: int | None = 64
    grammar_compile_worker_recycle_mb: int | None = 512
    grammar_max_spec_bytes: int = 1 << 20
    grammar_max_choices: int = 4096
    grammar_max_enum_values: int = 4096
    grammar_max_schema_depth: int = 64
    grammar_max_schema_nodes: int = 20_000
    num_threads: int | None = None
    output_history_size: int = 200
    tool_call_format: str = "auto"

    def __post_init__(self) -> None:
        checks = [
            (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"), "device",
             "must be auto, cpu, cuda or cuda:N"),
            (self.dtype in ("auto", "float32", "float16", "bfloat16"), "dtype",
             "must be auto, float32, float16 or bfloat16"),
            (self.kernels in KERNEL_CHOICES, "kernels", f"is unknown (Supported: {', '.join(KERNEL_CHOICES)})"),
            (self.max_num_seqs >= 1, "max_num_seqs", "must be >= 1"),
            (self.max_num_batched_tokens >= self.max_num_seqs, "max_num_batched_tokens",
             "must be >= max_num_seqs (every running request decodes one token a step)"),
            (self.max_model_len is None or self.max_model_len >= 2, "max_model_len", "must be >= 2"),
            (self.prefill_budget_while_decoding is None or self.prefill_budget_while_decoding >= 1,
             "prefill_budget_while_decoding", "must be >= 1"),
            (self.prefill_attention_context >= 1, "prefill_attention_context", "must be >= 1"),
            (self.num_kv_slots is None or self.num_kv_slots >= 16, "num_kv_slots", "must be >= 16"),
            (self.kv_cache_memory_gb is None or self.kv_cache_memory_gb > 0, "kv_cache_memory_gb", "must be > 0"),
            (0 < self.gpu_memory_utilization <= 1, "gpu_memory_utilization", "must be in (0, 1]"),
            (self.tensor_parallel_size >= 1, "tensor_parallel_size", "must be >= 1"),
            (self.tp_timeout_s > 0, "tp_timeout_s", "must be > 0"),
            (self.cuda_graph_tokens_per_seq >= 1, "cuda_graph_tokens_per_seq", "must be >= 1"),
            (self.grammar_compile_threads >= 1, "grammar_compile_threads", "must be >= 1"),
            (self.grammar_compile_timeout_s > 0, "grammar_compile_timeout_s", "must be > 0"),
            (self.grammar_cache_size >= 1, "grammar_cache_size", "must be >= 1"),
            (self.grammar_mask_budget_s > 0, "grammar_mask_budget_s", "must be > 0"),
            (min(self.grammar_max_spec_bytes, self.grammar_max_choices, self.grammar_max_enum_values,
                 self.grammar_max_schema_depth, self.grammar_max_schema_nodes) >= 1, "grammar_max_spec_bytes",
             "and the other grammar_max_* limits must be >= 1"),
            (self.grammar_compile_memory_mb is None or self.grammar_compile_memory_mb >= 64,
             "grammar_compile_memory_mb", "must be >= 64"),
            *((getattr(self, name) is None or getattr(self, name) >= 1, name, "must be >= 1 (or None)")
              for name in ("grammar_cache_max_mb", "grammar_tracking_cache_max_mb",
                           "grammar_compile_worker_recycle_mb")),
            (self.num_threads is None or self.num_threads >= 1, "num_threads", "must be >= 1"),
            (self.output_history_size >= 1, "output_history_size", "must be >= 1"),
            (self.tool_call_format in TOOL_CALL_FORMATS, "tool_call_format", f"must be one of {TOOL_CALL_FORMATS}"),
        ]
        for ok, name, why in checks:
            if not ok:
                raise ConfigError(f"EngineConfig.{name} {why}, got {getattr(self, name)!r}", param=name)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> "EngineConfig":
        """Build a config from ``LLMS_*`` variables, then ``overrides`` (which win).

        Raises
        ------
        ConfigError
            On an unknown override, an unparsable variable or an out-of-range value.
        """
        environ = os.environ if environ is None else environ
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(overrides) - set(fields)
        if unknown:
            raise ConfigError(f"unknown engine option(s): {sorted(unknown)}; known: {sorted(fields)}")
        values: dict[str, Any] = {}
        for name, f in fields.items():
            raw = environ.get(ENV_PREFIX + name.upper())
            if raw is not None:
                values[name] = _parse(raw, default=f.default, name=name)
        values.update(overrides)
        return cls(**values)

    def resolve_device(self) -> "torch.device":
        """The device ``device`` names: "auto" is CUDA when available, else the CPU."""
        import torch  # here, not at the top: the CLI reads this module before anything needs torch

        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    def resolve_dtype(self, device: "torch.device") -> "torch.dtype":
        """The weights' dtype on ``device``: "auto" is bfloat16 on CUDA and float32 elsewhere."""
        import torch

        if self.dtype == "auto":
            return torch.bfloat16 if device.type == "cuda" else torch.float32
        return getattr(torch, self.dtype)

    @property
    def torch_threads(self) -> int:
        """Threads for torch on the CPU: one core is left to the server, client and grammar threads.

        On an oversubscribed machine a parallel op's threads wait at a barrier for a descheduled peer: a gather
        that takes 14 us on one thread was measured at 20 ms on two threads of a busy 2-core machine.
        """
        if self.num_threads is not None:
            return self.num_threads
        return max(1, min(4, (os.cpu_count() or 1) - 1))


def _parse(raw: str, *, default: Any, name: str) -> Any:
    """Parse an environment string to the type of the field's default (None defaults stay numbers or text)."""
    text = raw.strip()
    if text.lower() in ("", "none", "null"):
        return None
    try:
        if isinstance(default, bool) or name.startswith("enable_"):
            if text.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(text)
            return text.lower() in ("1", "true", "yes", "on")
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float) or name.endswith("_gb"):
            return float(text)
        if default is None and name not in ("model",):
            return int(text) if text.lstrip("-").isdigit() else float(text)
    except ValueError as exc:
        raise ConfigError(f"{ENV_PREFIX}{name.upper()}={raw!r} is not a valid value", param=name) from exc
    return text
