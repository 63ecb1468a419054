"""Ratchet over a fixed slice of the JSONSchemaBench dev corpus, through the real Matcher: every 10th file whose
schema is at most 3,000 characters of JSON (so the slice fits the CI budget).

The harness is corpus.py (Llama 3 tokens from quicktok; labels by ``jsonschema``, whose verdict wins; compact
serialisation with keys in schema order). ``jsonschemabench_ratchet.json`` holds the counts of the last
accepted run: ``compiled``, ``valid_accepted`` and ``invalid_rejected`` may only rise, ``false_accepts`` only
fall (and is 0). ``LLMS_UPDATE_RATCHET=1`` rewrites the file from this run. The whole corpus runs in
``benchmarks/schema_coverage.py``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from tests.grammar.json_schema import corpus
from tests.grammar.vocab_fixtures import encoder, vocab_bundle

RATCHET = Path(__file__).with_name("jsonschemabench_ratchet.json")
EVERY = 10
MAX_SCHEMA_CHARS = 3000
RISING = ("compiled", "valid_accepted", "invalid_rejected")
# Far above any compile of the slice: a loaded CI machine must not turn compiles into refusals (the
# benchmark keeps the serving default of 10 s and counts its timeouts).
COMPILE_TIMEOUT_S = 60.0


def test_jsonschemabench_slice_ratchet():
    files = corpus.corpus_files(corpus.corpus_dir(), every=EVERY, max_chars=MAX_SCHEMA_CHARS)
    engine = corpus.Engine(corpus.corpus_compiler(COMPILE_TIMEOUT_S), encoder(corpus.VOCAB),
                           vocab_bundle(corpus.VOCAB)[1][0])
    tally = corpus.Tally()
    for path in files:
        corpus.run_file(path, engine, tally)
    counts = tally.counts()
    print(f"\nJSONSchemaBench dev, every {EVERY}th file: {json.dumps(counts, indent=1)}")
    print("\n".join(tally.mismatches))
    if os.environ.get("LLMS_UPDATE_RATCHET") == "1":
        RATCHET.write_text(json.dumps({"slice": f"every {EVERY}th file by name, schema <= {MAX_SCHEMA_CHARS} chars",
                                       "vocab": corpus.VOCAB,
                                       "counts": counts}, indent=1) + "\n")
    recorded = json.loads(RATCHET.read_text())["counts"]
    assert counts["schemas"] == recorded["schemas"], "the corpus slice changed: rerun with LLMS_UPDATE_RATCHET=1"
    drops = [f"{k}: {recorded[k]} -> {counts[k]}" for k in RISING if counts[k] < recorded[k]]
    if counts["false_accepts"] > recorded["false_accepts"]:
        drops.append(f"false_accepts: {recorded['false_accepts']} -> {counts['false_accepts']}")
    assert not drops, "ratchet dropped:\n" + "\n".join(drops)
    assert counts["false_accepts"] == 0, "\n".join(m for m in tally.mismatches if m.startswith("FALSE"))
