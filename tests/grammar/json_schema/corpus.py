"""JSONSchemaBench dev corpus through the real engine: compile each schema, feed each instance, count.

Shared by the ratchet test (a fixed slice) and ``benchmarks/schema_coverage.py`` (every file). An instance is
labelled by ``jsonschema`` (the validator of the schema's own ``$schema``, formats asserted as the engine does
by default); its label wins over the corpus file's. It is serialised compactly
(``separators=(",", ":")``, ``ensure_ascii=False``) and fed as the model's tokens (Llama 3 from quicktok, then
EOS) through a :class:`~lightllm_struct.grammar.Matcher`. The engine writes declared properties in schema order,
so the instance is tried with its keys in schema order (see :func:`schema_ordered`) and as given: accepted if
either is. JSON Schema validity never depends on key order, so an accepted invalid instance is a false accept
whichever order it was written in.
"""
from __future__ import annotations

import json
import os
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import pytest

REPO = Path(__file__).resolve().parents[3]
VOCAB = "llama3"


def corpus_dir() -> Path:
    """The corpus folder: ``$LLMS_JSONSCHEMABENCH`` or ``<repo>/../shared/data/jsonschemabench-dev``.

    Missing, it is a pytest skip, except under ``CI=true`` where it is a failure.
    """
    root = Path(os.environ.get("LLMS_JSONSCHEMABENCH", REPO.parent / "shared" / "data" / "jsonschemabench-dev"))
    if not root.is_dir() or not any(root.glob("*.json")):
        reason = f"JSONSchemaBench dev corpus not found at {root} (set LLMS_JSONSCHEMABENCH)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return root


def corpus_compiler(timeout_s: float | None):
    """A GrammarCompiler over the corpus vocabulary with the given compile deadline."""
    from lightllm_struct.grammar import GrammarCompiler, TokenizerInfo
    from tests.grammar.vocab_fixtures import vocab_bundle

    vocab, eos, special = vocab_bundle(VOCAB)
    info = TokenizerInfo.from_vocab(vocab, eos_token_ids=eos, special_token_ids=special)
    return GrammarCompiler(info, compile_timeout_s=timeout_s)


def corpus_files(root: Path, *, every: int = 1, max_chars: int | None = None) -> list[Path]:
    """The corpus files in name order; ``every`` > 1 keeps every n-th, ``max_chars`` those whose schema's JSON
    text is at most that long (small schemas compile fast: a CI-sized slice)."""
    files = sorted(root.glob("*.json"))[::every]
    if max_chars is None:
        return files
    return [f for f in files if len(json.dumps(json.loads(f.read_text())["schema"])) <= max_chars]


@dataclass
class Tally:
    """Counts over a run of the corpus; ``refusals`` by reason (the message with names and numbers blanked)."""

    schemas: int = 0
    compiled: int = 0
    valid: int = 0
    valid_accepted: int = 0
    invalid: int = 0
    invalid_rejected: int = 0
    unlabelled: int = 0
    refusals: Counter = field(default_factory=Counter)
    compile_s: list[float] = field(default_factory=list)
    slowest: list[tuple[float, str]] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (file name, the refusal's full message)

    def counts(self) -> dict[str, Any]:
        return {"schemas": self.schemas, "compiled": self.compiled, "valid": self.valid,
                "valid_accepted": self.valid_accepted, "invalid": self.invalid,
                "invalid_rejected": self.invalid_rejected, "false_accepts": self.invalid - self.invalid_rejected,
                "unlabelled": self.unlabelled, "refusals": dict(self.refusals.most_common())}


def refusal_reason(exc: BaseException) -> str:
    """A short class of the refusal: exception type and message with quoted names and numbers blanked."""
    message = str(exc).splitlines()[0] if str(exc) else ""
    message = re.sub(r"\(at [^)]*\)", "", message)
    message = re.sub(r"'[^']*'|\"[^\"]*\"", "…", message)
    message = re.sub(r"\d+", "N", message)
    return f"{type(exc).__name__}: {message.strip()[:70]}"


def label(schema: Any, data: Any) -> bool | None:
    """``jsonschema``'s verdict (formats asserted), None where it cannot decide (remote refs, bad schema)."""
    try:
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        return cls(schema, format_checker=cls.FORMAT_CHECKER).is_valid(data)
    except Exception:  # an unresolvable $ref, a regex Python cannot compile: no label
        return None


def accepted(grammar, encode, eos: int, text: str) -> bool:
    """Whether the Matcher takes ``text`` as the model's tokens and then EOS."""
    from lightllm_struct.grammar import Matcher

    matcher = Matcher(grammar)
    return all(matcher.accept_token(t) for t in encode(text)) and matcher.accept_token(eos) and \
        matcher.is_terminated()


def compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class Engine:
    """This engine as the corpus drives it: compile (refusals are ``refusals``), then accept text or not."""

    def __init__(self, comp, encode, eos: int) -> None:
        from lightllm_struct.errors import LightLLMStructError

        self.comp, self.encode, self.eos = comp, encode, eos
        self.refusals: tuple[type[BaseException], ...] = (LightLLMStructError,)

    def compile(self, schema: Any) -> Any:
        return self.comp.compile_json_schema(schema)

    def accepts(self, grammar: Any, text: str) -> bool:
        return accepted(grammar, self.encode, self.eos, text)


def run_file(path: Path, engine, tally: Tally) -> None:
    """Compile one corpus file's schema and check its instances, adding to ``tally``."""
    doc = json.loads(path.read_text())
    schema = doc["schema"]
    tally.schemas += 1
    start = time.perf_counter()
    try:
        grammar = engine.compile(schema)
    except engine.refusals as exc:
        tally.refusals[refusal_reason(exc)] += 1
        tally.refused.append((path.name, f"{type(exc).__name__}: {exc}"[:400]))
        return
    finally:
        tally.compile_s.append(time.perf_counter() - start)
        tally.slowest = sorted([*tally.slowest, (tally.compile_s[-1], path.name)], reverse=True)[:10]
    tally.compiled += 1
    for case in doc["tests"]:
        verdict = label(schema, case["data"])
        if verdict is None:
            tally.unlabelled += 1
            continue
        # schema order; as given; and schema order with the first required key first, as an object branch of a
        # union of objects writes it (objects.compile_object)
        texts = dict.fromkeys([compact(schema_ordered(case["data"], schema, schema)), compact(case["data"]),
                               compact(schema_ordered(case["data"], schema, schema, lead=True))])
        ok = any(engine.accepts(grammar, t) for t in texts)
        if verdict:
            tally.valid += 1
            tally.valid_accepted += ok
        else:
            tally.invalid += 1
            tally.invalid_rejected += not ok
        if ok != verdict:
            kind = "FALSE ACCEPT" if ok else "false reject"
            tally.mismatches.append(f"{kind}: {path.name}: {next(iter(texts))[:200]}")


def schema_ordered(value: Any, schema: Any, root: Any, depth: int = 0, *, lead: bool = False) -> Any:
    """``value`` with each object's declared keys first, in the order its schema declares them (``lead``: the
    first declared key that is required before them).

    Follows in-document ``$ref``s, ``allOf`` (declared keys of every branch, in order) and the first
    ``anyOf``/``oneOf`` branch the value is valid under; other keys keep their order after the declared ones.
    """
    schema = _resolve(schema, root)
    if not isinstance(schema, dict) or depth > 64:
        return value
    props = _declared(schema, value, root)
    if isinstance(value, dict):
        keys = [k for k in props if k in value] + [k for k in value if k not in props]
        required = _declared(schema, value, root, word="required")
        first = next((k for k in [*props, *required] if k in required and k in value), None)
        if lead and first is not None:
            keys = [first] + [k for k in keys if k != first]
        return {k: schema_ordered(value[k], props.get(k, schema.get("additionalProperties", True)), root, depth + 1,
                                  lead=lead) for k in keys}
    if isinstance(value, list):
        items = _item_schemas(schema, value, root)
        return [schema_ordered(v, s, root, depth + 1, lead=lead) for v, s in zip(value, items)]
    return value


def _resolve(schema: Any, root: Any) -> Any:
    for _ in range(32):
        if not (isinstance(schema, dict) and isinstance(schema.get("$ref"), str) and schema["$ref"].startswith("#")):
            return schema
        target = _pointer(root, schema["$ref"][1:])
        if target is None:
            return schema
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        schema = {"allOf": [target, rest]} if rest else target
    return schema


def _pointer(root: Any, fragment: str) -> Any:
    from urllib.parse import unquote

    node = root
    for raw in unquote(fragment).split("/")[1:]:
        token = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return None
    return node


def _declared(schema: dict, value: Any, root: Any, *, word: str = "properties") -> dict[str, Any]:
    """Declared property schemas in declaration order: the node's, then allOf's, then a matching branch's
    (``word="required"``: the required keys so, each mapped to True)."""
    out: dict[str, Any] = {}
    own = schema.get(word) or {}
    for name, sub in (own.items() if isinstance(own, dict) else ((k, True) for k in own if isinstance(k, str))):
        out.setdefault(name, sub)
    for sub in schema.get("allOf") or []:
        sub = _resolve(sub, root)
        if isinstance(sub, dict):
            for name, s in _declared(sub, value, root, word=word).items():
                out.setdefault(name, {"allOf": [out[name], s]} if name in out else s)
    for key in ("anyOf", "oneOf"):
        for sub in schema.get(key) or []:
            sub = _resolve(sub, root)
            if isinstance(sub, dict) and _valid_under(sub, value, root):
                for name, s in _declared(sub, value, root, word=word).items():
                    out.setdefault(name, s)
                break
    return out


def _item_schemas(schema: dict, value: list, root: Any, depth: int = 0) -> list[Any]:
    """Each item's schema: the node's own, else (the node's ``items`` under an allOf, or the first anyOf/oneOf
    branch the array is valid under, as ``_declared`` does for properties) a subschema's."""
    if "items" not in schema and "prefixItems" not in schema and depth < 16:
        subs = [_resolve(s, root) for s in schema.get("allOf") or []]
        subs += [b for word in ("anyOf", "oneOf") for b in (_resolve(s, root) for s in schema.get(word) or [])
                 if isinstance(b, dict) and _valid_under(b, value, root)][:1]
        for sub in subs:
            if isinstance(sub, dict):
                found = _item_schemas(sub, value, root, depth + 1)
                if any(s is not True for s in found):
                    return found
    prefix = schema.get("prefixItems")
    items = schema.get("items", True)
    if prefix is None and isinstance(items, list):  # draft 4-7 tuples
        prefix, items = items, schema.get("additionalItems", True)
    prefix = prefix if isinstance(prefix, list) else []
    return [prefix[i] if i < len(prefix) else items for i in range(len(value))]


def _valid_under(sub: dict, value: Any, root: Any) -> bool:
    try:
        cls = jsonschema.validators.validator_for(root, default=jsonschema.Draft202012Validator)
        return cls(root).evolve(schema=sub).is_valid(value)
    except Exception:
        return False
