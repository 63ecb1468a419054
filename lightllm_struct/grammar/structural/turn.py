"""The grammar of one assistant turn: [reasoning] then free text, tool calls, or a constrained answer.

Every structural piece is a named regex terminal (regex rather than string, so that lark never merges it
with an equal literal of an arguments grammar: a Llama call's closing ``}`` is not the arguments' ``}``),
and its name maps to the :class:`Region` it spells. Terminals not in that map are the arguments of the
call being made (or, outside any call, the constrained answer).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lightllm_struct.grammar.errors import GrammarError, GrammarSyntaxError
from lightllm_struct.grammar.structural.lark_names import prefix_lark_names
from lightllm_struct.grammar.structural.markers import regex_literal, text_without
from lightllm_struct.grammar.structural.regions import Region

MODES = ("text", "auto", "required")
CONTENT, REASONING, MARKER = Region("content"), Region("reasoning"), Region("marker")


@dataclass(frozen=True)
class CallSpec:
    """One callable structure: the literal before its arguments, their JSON schema, the literal after.

    ``tail_regex`` replaces the literal ``tail`` where the tail has several spellings; ``param`` names the
    request parameter that a schema error blames (``tools[0].function.parameters``).
    """

    name: str
    head: str
    schema: Any
    tail: str
    tail_regex: str | None = None
    param: str = ""


@dataclass(frozen=True)
class Reasoning:
    """A reasoning section: free text between ``open`` ("" when the prompt opened it) and ``close``.

    ``max_units`` bounds its length as a counted repeat (see ``markers.text_without``).
    """

    open: str = "<think>"
    close: str = "</think>"
    max_units: int | None = None


@dataclass(frozen=True, kw_only=True)
class TurnSpec:
    """What a turn may hold.

    Attributes
    ----------
    calls:
        The structures that may be called (one per allowed tool).
    mode:
        "text" (no call), "auto" (free text, or text then calls) or "required" (calls only).
    parallel:
        More than one call in a turn.
    separator, block_open, block_close:
        Text between parallel calls, before the first and after the last.
    triggers:
        In "auto": the markers that switch free text to calls; each call's ``block_open + head`` (or, with
        ``interleave``, ``head``) starts with exactly one of them.
    interleave:
        Free text may also follow a call (xgrammar's triggered tags); otherwise only more calls.
    reasoning:
        A reasoning section before everything else.
    answer:
        A Lark grammar (start rule ``start``) the answer must match when no call is made, instead of free text.
    whitespace:
        Whitespace of the arguments JSON: "flexible" (what chat templates' ``tojson`` writes) or "compact".
    """

    calls: tuple[CallSpec, ...] = ()
    mode: str = "text"
    parallel: bool = True
    separator: str = ""
    block_open: str = ""
    block_close: str = ""
    triggers: tuple[str, ...] = ()
    interleave: bool = False
    reasoning: Reasoning | None = None
    answer: str | None = None
    whitespace: str = "flexible"


@dataclass(frozen=True)
class TurnGrammar:
    """A turn's Lark grammar, the region of each structural terminal and the marker it ends with."""

    lark: str
    regions: dict[str, Region]
    strips: dict[str, str] = field(default_factory=dict)
    names: tuple[str, ...] = ()


class _Builder:
    def __init__(self, spec: TurnSpec) -> None:
        self.spec = spec
        self.rules: list[str] = []
        self.terms: dict[str, str] = {}  # regex -> terminal name (equal regexes share a terminal)
        self.defs: list[str] = []
        self.regions: dict[str, Region] = {}
        self.strips: dict[str, str] = {}

    def term(self, base: str, regex: str, region: Region, strip: str = "") -> str:
        name = self.terms.get(regex)
        if name is None:
            name = f"LLMS_{base}"
            self.terms[regex] = name
            self.defs.append(f"{name}: /{regex}/")
            self.regions[name], self.strips[name] = region, strip
        return name

    def literal(self, base: str, text: str, region: Region = MARKER) -> str:
        return self.term(base, regex_literal(text), region)

    def embed(self, lark: str, prefix: str) -> str:
        self.rules.append(prefix_lark_names(lark, prefix))
        return f"{prefix.lower()}start"


def _arguments(builder: _Builder, i: int, call: CallSpec) -> str:
    from lightllm_struct.grammar.json_schema import json_schema_to_lark

    try:
        lark = json_schema_to_lark(call.schema, whitespace=builder.spec.whitespace)
    except GrammarError as exc:
        if call.param:
            exc.param = call.param
            exc.message = f"{call.param}: {exc.message}"
        raise
    return builder.embed(lark, f"llms_t{i}_")


def _calls_rules(b: _Builder) -> None:
    """``llms_calls`` (from the start) and ``llms_rest_<j>`` (after trigger ``j``)."""
    spec = b.spec
    args = [_arguments(b, i, c) for i, c in enumerate(spec.calls)]
    tails = [b.term(f"TAIL_{i}", c.tail_regex or regex_literal(c.tail), MARKER) for i, c in enumerate(spec.calls)]

    def alternatives(rule: str, base: str, heads: list[tuple[int, str]]) -> None:
        alts = [f"{b.literal(f'{base}_{i}', h, Region('call', i))} {args[i]} {tails[i]}" for i, h in heads]
        b.rules.append(f"{rule}: " + "\n    | ".join(alts))

    indexed = list(enumerate(spec.calls))
    more = ""
    if spec.parallel and not spec.interleave:
        alternatives("llms_next", "HEAD", [(i, c.head) for i, c in indexed])
        sep = f"{b.literal('SEP', spec.separator)} " if spec.separator else ""
        more = f" ({sep}llms_next)*"
    close = f" {b.literal('CLOSE', spec.block_close)}" if spec.block_close else ""
    alternatives("llms_first", "FIRST", [(i, spec.block_open + c.head) for i, c in indexed])
    b.rules.append(f"llms_calls: llms_first{more}{close}")
    for j, trig in enumerate(spec.triggers):
        opened = [(i, (c.head if spec.interleave else spec.block_open + c.head)) for i, c in indexed]
        mine = [(i, h[len(trig):]) for i, h in opened if h.startswith(trig)]
        if any(not rest for _, rest in mine):
            raise GrammarSyntaxError(f"trigger {trig!r} must be a proper prefix of what it opens")
        if not mine:
            raise GrammarSyntaxError(f"trigger {trig!r} opens no structure")
        alternatives(f"llms_after_{j}", f"REST{j}", mine)
        b.rules.append(f"llms_rest_{j}: llms_after_{j}{'' if spec.interleave else more + close}")
    opened = [c.head if spec.interleave else spec.block_open + c.head for c in spec.calls]
    orphans = [h for h in opened if not any(h.startswith(t) for t in spec.triggers)]
    if spec.mode == "auto" and orphans:
        raise GrammarSyntaxError(f"no trigger opens {orphans[0]!r}")


def _answer_rule(b: _Builder) -> str:
    spec = b.spec
    if spec.mode == "required":
        # bounded: the blank line models write after reasoning, not a place to idle in
        gap = b.term("GAP", r"\s{1,4}", MARKER) + "? " if spec.reasoning else ""
        return f"{gap}llms_calls"
    if spec.answer is None or spec.interleave:
        text = b.term("TEXT", text_without(spec.triggers) if spec.triggers else r"[\s\S]+", CONTENT)
    answer = b.embed(spec.answer, "llms_r_") if spec.answer is not None else f"{text}?"
    if spec.mode == "text":
        return answer
    body = text_without(spec.triggers)
    opens = [f"{b.term(f'TEXT_TRIG{j}', f'(?:{body})?{regex_literal(t)}', CONTENT, strip=t)} llms_rest_{j}"
             for j, t in enumerate(spec.triggers)]
    if spec.interleave:
        b.rules.append("llms_segment: " + " | ".join(opens))
        return f"llms_segment* {text}?"
    alts = [answer, *opens]
    if spec.answer is not None:
        alts = [answer, "llms_calls"]  # a constrained answer leaves no free text to trigger from
    return " | ".join(f"({a})" for a in alts)


def turn_grammar(spec: TurnSpec) -> TurnGrammar:
    """The Lark grammar of a turn and the regions of its terminals.

    Raises
    ------
    GrammarSyntaxError
        An unknown mode, no call in a mode that calls, or triggers that do not fit the calls.
    SchemaError, UnsupportedSchemaFeature
        A call's arguments schema (``param`` set to the call's ``param``).
    """
    if spec.mode not in MODES:
        raise GrammarSyntaxError(f"turn mode must be one of {MODES}, not {spec.mode!r}")
    if spec.mode != "text" and not spec.calls:
        raise GrammarSyntaxError(f"a turn in mode {spec.mode!r} needs at least one call")
    if spec.mode == "auto" and not spec.triggers:
        raise GrammarSyntaxError("a turn in mode 'auto' needs triggers")
    b = _Builder(spec)
    if spec.mode != "text":
        _calls_rules(b)
    top = [_answer_rule(b)]
    if spec.reasoning is not None:
        r = spec.reasoning
        think = b.term("THINK", f"(?:{text_without([r.close], max_units=r.max_units)})?{regex_literal(r.close)}",
                       REASONING, strip=r.close)
        opener = f"{b.literal('THINK_OPEN', r.open)} " if r.open else ""
        b.rules.append(f"llms_think: {opener}{think}")
        top = [f"llms_think ({top[0]})"]
    lark = "\n".join([f"start: {top[0]}", *b.rules, *b.defs]) + "\n"
    return TurnGrammar(lark=lark, regions=dict(b.regions), strips=dict(b.strips),
                       names=tuple(c.name for c in spec.calls))
