"""Typed errors of the grammar engine. Every message names the offending place."""
from __future__ import annotations

from lightllm_struct.errors import LightLLMStructError


class GrammarError(LightLLMStructError):
    """Base of grammar-engine errors: the user's constraint is at fault (HTTP 400)."""

    http_status = 400
    error_type = "invalid_request_error"


class SchemaError(GrammarError):
    """A malformed JSON schema. ``pointer`` is the JSON pointer of the offending subschema."""

    def __init__(self, message: str, *, pointer: str = "", param: str | None = None) -> None:
        super().__init__(f"{message} (at {pointer or '/'})", param=param)
        self.pointer = pointer


class UnsupportedSchemaFeature(SchemaError):
    """A keyword (or value) the engine cannot enforce. Never silently loosened."""


class RegexError(GrammarError):
    """An invalid regular expression, or one using a feature (look-around, back-reference) we cannot compile."""


class GrammarSyntaxError(GrammarError):
    """A Lark/EBNF grammar that does not parse; the message carries line and column."""


class GrammarConflictError(GrammarError):
    """A grammar the LR construction cannot make deterministic (LALR/LR(1) conflict)."""


class EmptyLanguageError(GrammarError):
    """A constraint that no finite output satisfies (``start: start "a"``, ``[^\\s\\S]``, a schema whose every
    instance is infinite): refused at compile time instead of failing mid-generation."""


class GrammarTooComplex(GrammarError):
    """Compilation exceeded a size limit (states, rules, DFA size)."""

    http_status = 413


class CompileTimeout(GrammarError):
    """Compilation exceeded its deadline."""

    http_status = 422


class InvalidTokenError(GrammarError):
    """A token id outside the vocabulary was offered to a matcher."""


class MatcherStateError(GrammarError):
    """A matcher was asked for something its state does not allow (rolling back past its start)."""

    http_status = 500
    error_type = "internal_error"
