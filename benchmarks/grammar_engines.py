"""One adapter per grammar engine, all driven the same way by grammar_bench.py.

Every adapter is built from the same raw vocabulary (bytes per token id, eos ids, special ids), compiles a
JSON schema to compact JSON (separators "," and ":", no whitespace), fills one packed int32 bitmask row per
step and advances with the trace token. Special tokens are given to each engine in its own convention so
that none of them treats a control token as text.
"""
from __future__ import annotations

import inspect
import json
from typing import Any

import torch

ENGINE_NAMES = ("lightllm_struct", "xgrammar", "llguidance", "outlines_core")


class CompileFailed(Exception):
    """The engine rejected the schema (unsupported feature, error state, or regex it cannot build)."""


class Adapter:
    """Drive one engine: compile -> matcher -> (fill, accept)* -> accept EOS."""

    name = ""

    def __init__(self, vocab: list[bytes], eos_ids: list[int], special_ids: list[int]) -> None:
        self.vocab_size = len(vocab)
        self.eos = eos_ids[0]
        self.mask = torch.full((1, (self.vocab_size + 31) // 32), -1, dtype=torch.int32)
        self.mask_np = self.mask.numpy()  # the same memory, for engines that take numpy / pointers

    def compile(self, schema: dict) -> Any:
        raise NotImplementedError

    def matcher(self, compiled: Any) -> Any:
        raise NotImplementedError

    def fill(self, m: Any) -> None:
        raise NotImplementedError

    def accept(self, m: Any, token_id: int) -> bool:
        raise NotImplementedError

    def finished(self, m: Any) -> bool:
        raise NotImplementedError

    def allowed(self, token_id: int) -> bool:
        word = int(self.mask_np[0, token_id >> 5])
        return (word >> (token_id & 31)) & 1 == 1


class Ours(Adapter):
    name = "lightllm_struct"

    def __init__(self, vocab, eos_ids, special_ids, scanner: str = "trie"):
        super().__init__(vocab, eos_ids, special_ids)
        from lightllm_struct.grammar import GrammarCompiler, TokenizerInfo

        kwargs: dict[str, Any] = {"eos_token_ids": eos_ids}
        if "special_token_ids" in inspect.signature(TokenizerInfo.from_vocab).parameters:
            kwargs["special_token_ids"] = special_ids
        else:  # an empty token is no text: the engine can never emit it as part of a string
            special = set(special_ids) - set(eos_ids)
            vocab = [b"" if i in special else tok for i, tok in enumerate(vocab)]
        self.compiler = GrammarCompiler(TokenizerInfo.from_vocab(vocab, **kwargs), scanner=scanner)

    def compile(self, schema):
        from lightllm_struct.errors import LightLLMStructError

        try:
            return self.compiler.compile_json_schema(schema, whitespace="compact")
        except LightLLMStructError as exc:
            raise CompileFailed(f"{type(exc).__name__}: {exc}") from exc

    def matcher(self, compiled):
        from lightllm_struct.grammar import Matcher

        return Matcher(compiled)

    def fill(self, m):
        m.fill_next_token_bitmask(self.mask, index=0)

    def accept(self, m, token_id):
        return bool(m.accept_token(token_id))

    def finished(self, m):
        return m.is_terminated()


class XGrammar(Adapter):
    name = "xgrammar"

    def __init__(self, vocab, eos_ids, special_ids):
        super().__init__(vocab, eos_ids, special_ids)
        import xgrammar as xgr

        # xgrammar flags a token as special when its bytes are empty (stop tokens stay stop tokens).
        special = set(special_ids) - set(eos_ids)
        raw = [b"" if i in special else tok for i, tok in enumerate(vocab)]
        info = xgr.TokenizerInfo(raw, xgr.VocabType.RAW, vocab_size=len(raw), stop_token_ids=list(eos_ids))
        self.xgr = xgr
        self.compiler = xgr.GrammarCompiler(info, max_threads=1, cache_enabled=False)

    def compile(self, schema):
        try:
            # strict_mode=False keeps JSON Schema semantics (additional properties allowed unless forbidden).
            return self.compiler.compile_json_schema(
                json.dumps(schema), any_whitespace=False, separators=(",", ":"), strict_mode=False)
        except Exception as exc:  # xgrammar raises RuntimeError / its own types for unsupported schemas
            raise CompileFailed(f"{type(exc).__name__}: {exc}") from exc

    def matcher(self, compiled):
        return self.xgr.GrammarMatcher(compiled)

    def fill(self, m):
        m.fill_next_token_bitmask(self.mask, 0)

    def accept(self, m, token_id):
        return bool(m.accept_token(token_id))

    def finished(self, m):
        return m.is_terminated()


class _LLGuidanceVocab:
    """The duck-typed tokenizer llguidance.TokenizerWrapper reads (tokens, eos, specials, encode)."""

    def __init__(self, vocab, eos_ids, special_ids, encode):
        special = set(special_ids)
        # llguidance marks special tokens with a 0xFF prefix byte (never valid UTF-8, so never text).
        self.tokens = [b"\xff" + tok if i in special else tok for i, tok in enumerate(vocab)]
        self.eos_token_id = eos_ids[0]
        self.bos_token_id = None
        self.special_token_ids = sorted(special)
        self._encode = encode

    def __call__(self, text):
        if isinstance(text, bytes):
            raise TypeError("str only")  # TokenizerWrapper then falls back to passing str
        return self._encode(text)


class LLGuidance(Adapter):
    name = "llguidance"

    def __init__(self, vocab, eos_ids, special_ids, encode=None):
        super().__init__(vocab, eos_ids, special_ids)
        import llguidance
        import llguidance.numpy

        wrapper = llguidance.TokenizerWrapper(_LLGuidanceVocab(vocab, eos_ids, special_ids, encode or _no_encode))
        self.ll = llguidance
        self.fill_np = llguidance.numpy.fill_next_token_bitmask
        self.tokenizer = llguidance.LLTokenizer(wrapper, eos_token=list(eos_ids))

    def compile(self, schema):
        grammar = self.ll.LLMatcher.grammar_from_json_schema(schema, defaults={"whitespace_flexible": False})
        m = self.ll.LLMatcher(self.tokenizer, grammar, log_level=0)
        if m.is_error():
            raise CompileFailed(m.get_error())
        return [grammar, m]

    def matcher(self, compiled):
        grammar, first = compiled
        if first is not None:  # the matcher built while compiling is the first one handed out
            compiled[1] = None
            return first
        return self.ll.LLMatcher(self.tokenizer, grammar, log_level=0)

    def fill(self, m):
        self.fill_np(m, self.mask_np, 0)

    def accept(self, m, token_id):
        return bool(m.consume_token(token_id)) and not m.is_error()

    def finished(self, m):
        return m.is_stopped() or m.is_accepting()


def _no_encode(text: str) -> list[int]:
    raise TypeError("no encoder given")


class OutlinesCore(Adapter):
    name = "outlines_core"

    def __init__(self, vocab, eos_ids, special_ids):
        super().__init__(vocab, eos_ids, special_ids)
        import outlines_core

        by_bytes: dict[bytes, list[int]] = {}
        skip = set(special_ids) | set(eos_ids)
        for i, tok in enumerate(vocab):
            if i not in skip and tok:
                by_bytes.setdefault(tok, []).append(i)
        self.oc = outlines_core
        self.vocabulary = outlines_core.Vocabulary(eos_ids[0], by_bytes)

    def compile(self, schema):
        try:
            regex = self.oc.json_schema.build_regex_from_schema(json.dumps(schema), whitespace_pattern="")
            return self.oc.Index(regex, self.vocabulary)
        except Exception as exc:  # ValueError / its own errors for unsupported schemas
            raise CompileFailed(f"{type(exc).__name__}: {exc}") from exc

    def matcher(self, compiled):
        return self.oc.Guide(compiled)

    def fill(self, m):
        m.write_mask_into(self.mask_np.ctypes.data, self.mask_np.size, 4)

    def accept(self, m, token_id):
        if token_id == self.eos:  # outlines allows EOS in final states but has no transition for it
            return m.is_finished()
        try:
            m.advance(token_id, return_tokens=False)
        except Exception:
            return False
        return True

    def finished(self, m):
        return m.is_finished()


def make_adapter(name: str, vocab, eos_ids, special_ids, *, encode=None, scanner: str = "trie") -> Adapter:
    """The adapter of engine ``name``; ``scanner`` picks our token-mask scanner (token_mask.SCANNERS)."""
    if name == "llguidance":
        return LLGuidance(vocab, eos_ids, special_ids, encode)
    if name == "lightllm_struct":
        return Ours(vocab, eos_ids, special_ids, scanner=scanner)
    classes = {"lightllm_struct": Ours, "xgrammar": XGrammar, "outlines_core": OutlinesCore}
    return classes[name](vocab, eos_ids, special_ids)


__all__ = ["Adapter", "CompileFailed", "ENGINE_NAMES", "make_adapter"]
