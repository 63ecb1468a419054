"""JSON-Schema-Test-Suite ratchet through the real engine, for every draft folder (4, 6, 7, 2019-09, 2020-12).

Each draft's schemas are compiled with that draft's semantics (``draft=...`` for schemas without
``$schema``; ``format`` an annotation, as every draft's default, so ``assert_formats=False``). For every case
whose schema compiles, the compact serialisation of the instance
(``json.dumps(x, separators=(",", ":"), ensure_ascii=False)``) is fed token by token (SmolLM2's own
tokenization, then EOS) through a Matcher; a case agrees when it is accepted iff the suite says valid. The
engine writes an object's properties in one order (the schema's), so an instance counts as accepted when its
serialisation with the keys of each object in some order is (up to 120 orders are tried; all orders count for
false accepts too).
Per-draft, per-file counts {cases, compiled, agreed, false_accepts} live in schema_suite_ratchet.json: compiled
and agreed may only rise, false accepts only fall (and are 0), and every compiled case must agree. ``LLMS_UPDATE_RATCHET=1`` rewrites the file from this run.
The suite: ``$LLMS_JSON_SCHEMA_SUITE`` or ``<repo>/../shared/data/JSON-Schema-Test-Suite``; missing, it is a
skip, except under ``CI=true`` where it fails.
"""
from __future__ import annotations

import itertools
import json
import os
from collections import Counter
from pathlib import Path

import pytest

from lightllm_struct.grammar.errors import GrammarError
from tests.grammar.vocab_fixtures import compiler, smollm2_tokenizer

REPO = Path(__file__).resolve().parents[2]
RATCHET = Path(__file__).with_name("schema_suite_ratchet.json")
DRAFTS = ("draft4", "draft6", "draft7", "draft2019-09", "draft2020-12")
FIELDS = ("cases", "compiled", "agreed", "false_accepts")


def _suite_dir(draft: str) -> Path:
    root = Path(os.environ.get("LLMS_JSON_SCHEMA_SUITE", REPO.parent / "shared" / "data" / "JSON-Schema-Test-Suite"))
    tests = root / "tests" / draft
    if not tests.is_dir():
        reason = f"JSON-Schema-Test-Suite not found at {tests} (set LLMS_JSON_SCHEMA_SUITE)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return tests


def _accepted(grammar, tok, text: str) -> bool:
    from lightllm_struct.grammar import Matcher

    matcher = Matcher(grammar)
    for token in tok.encode(text, add_special_tokens=False):
        if not matcher.accept_token(token):
            return False
    return matcher.accept_token(tok.eos_token_id) and matcher.is_terminated()


def key_orders(value):
    """``value`` with the keys of each of its objects in every order (the given order first)."""
    if isinstance(value, dict):
        items = list(value.items())
        for perm in itertools.permutations(range(len(items))):
            for children in itertools.product(*[list(_bounded(key_orders(items[i][1]))) for i in perm]):
                yield {items[i][0]: child for i, child in zip(perm, children)}
    elif isinstance(value, list):
        yield from (list(v) for v in itertools.product(*[list(_bounded(key_orders(x))) for x in value]))
    else:
        yield value


def _bounded(orders, limit: int = 24):
    return itertools.islice(orders, limit)


def _run_file(path: Path, draft: str, comp, tok, mismatches: list[str]) -> Counter:
    counts: Counter = Counter({f: 0 for f in FIELDS})
    for group in json.loads(path.read_text()):
        counts["cases"] += len(group["tests"])
        try:
            grammar = comp.compile_json_schema(group["schema"], assert_formats=False, draft=draft)
        except GrammarError:  # SchemaError, UnsupportedSchemaFeature, GrammarTooComplex, ...: not compiled
            continue
        counts["compiled"] += len(group["tests"])
        for case in group["tests"]:
            text = json.dumps(case["data"], separators=(",", ":"), ensure_ascii=False)
            accepted = any(_accepted(grammar, tok, json.dumps(v, separators=(",", ":"), ensure_ascii=False))
                           for v in itertools.islice(key_orders(case["data"]), 120))
            if accepted == case["valid"]:
                counts["agreed"] += 1
                continue
            counts["false_accepts"] += accepted
            kind = "FALSE ACCEPT" if accepted else "false reject"
            mismatches.append(f"{kind}: {draft}/{path.name} / {group['description']} / {case['description']}: {text}")
    return counts


@pytest.mark.slow
@pytest.mark.parametrize("draft", DRAFTS)
def test_schema_suite_ratchet(draft):
    suite = _suite_dir(draft)
    comp, tok = compiler("smollm2"), smollm2_tokenizer()
    mismatches: list[str] = []
    results = {p.name: dict(_run_file(p, draft, comp, tok, mismatches)) for p in sorted(suite.glob("*.json"))}
    totals = {f: sum(r[f] for r in results.values()) for f in FIELDS}
    print(f"\nJSON-Schema-Test-Suite {draft}: {totals}")
    print("\n".join(mismatches))
    ratchet = json.loads(RATCHET.read_text())
    if os.environ.get("LLMS_UPDATE_RATCHET") == "1":
        ratchet["drafts"][draft] = {"totals": totals, "files": results}
        RATCHET.write_text(json.dumps(ratchet, indent=1, sort_keys=True) + "\n")
    recorded = ratchet["drafts"].get(draft, {"files": {}})["files"]
    drops = []
    for name, old in recorded.items():
        new = results.get(name, dict.fromkeys(FIELDS, 0))
        drops += [f"{name}: {f} {old[f]} -> {new[f]}" for f in ("compiled", "agreed") if new[f] < old[f]]
        if new["false_accepts"] > old["false_accepts"]:
            drops.append(f"{name}: false_accepts {old['false_accepts']} -> {new['false_accepts']}")
    assert not drops, "ratchet dropped:\n" + "\n".join(drops)
    assert totals["false_accepts"] == 0 and totals["agreed"] == totals["compiled"], "\n".join(mismatches)
