"""Markdown tables for grammar_bench.py: summary per engine, our gap to the best peer, per-schema detail."""
from __future__ import annotations

import datetime
import os
import platform

import numpy as np

OURS = "lightllm_struct"


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def summarize(results: list[dict], only: set[str] | None = None) -> dict:
    ok = [r for r in results if "error" not in r and (only is None or r["name"] in only)]
    compile_ms = [r["compile_ms"] for r in ok]
    mask_us = [x for r in ok for x in r["mask_us"]]
    # Compile plus the first mask: engines that build lazily (llguidance) pay part of "compile" there.
    first_ms = [r["compile_ms"] + r["mask_us"][0] / 1000.0 for r in ok if r["mask_us"]]
    return {
        "first": _pct(first_ms, 50),
        "compiled": len(ok),
        "accepted": sum(r["verdict"] == "ok" for r in ok),
        "compile": (_pct(compile_ms, 50), _pct(compile_ms, 99), max(compile_ms, default=float("nan"))),
        "mask": (_pct(mask_us, 50), _pct(mask_us, 99), max(mask_us, default=float("nan"))),
        "samples": len(mask_us),
    }


def _summary_table(results: dict[str, list[dict]], total: int, only: set[str] | None) -> list[str]:
    lines = ["| engine | compiled | trace accepted | compile p50 ms | compile p99 ms | compile max ms "
             "| compile + 1st mask p50 ms | mask p50 µs | mask p99 µs | mask max µs | mask samples |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for engine, rs in results.items():
        s = summarize(rs, only)
        c, m = s["compile"], s["mask"]
        lines.append(f"| {engine} | {s['compiled']}/{total} | {s['accepted']}/{s['compiled']} | {c[0]:.2f} | "
                     f"{c[1]:.2f} | {c[2]:.2f} | {s['first']:.2f} | {m[0]:.1f} | {m[1]:.1f} | {m[2]:.1f} | "
                     f"{s['samples']} |")
    return lines


def _gap_lines(results: dict[str, list[dict]], only: set[str] | None) -> list[str]:
    """Our numbers against the best peer for each target (mask p50/p99 <= best, compile p50 <= 2x best)."""
    if OURS not in results or len(results) < 2:
        return []
    ours = summarize(results[OURS], only)
    if not ours["compiled"]:
        return [f"- {OURS}: compiled no schema; targets not measurable."]
    peers = {e: summarize(rs, only) for e, rs in results.items() if e != OURS}
    peers = {e: s for e, s in peers.items() if s["compiled"]}
    lines = []
    for label, key, idx, factor in (("mask p50", "mask", 0, 1.0), ("mask p99", "mask", 1, 1.0),
                                    ("compile p50", "compile", 0, 2.0)):
        best_engine = min(peers, key=lambda e: peers[e][key][idx])
        best = peers[best_engine][key][idx]
        mine = ours[key][idx]
        target = best * factor
        verdict = "met" if mine <= target else f"NOT met: {mine / target:.2f}x over the target"
        unit = "µs" if key == "mask" else "ms"
        lines.append(f"- {label}: ours {mine:.2f} {unit}, best peer {best_engine} {best:.2f} {unit} "
                     f"(target <= {target:.2f} {unit}): {verdict}")
    return lines


def _detail_table(results: dict[str, list[dict]], cases: list[dict]) -> list[str]:
    engines = list(results)
    lines = ["| schema | tokens | " + " | ".join(engines) + " |", "|---|---|" + "---|" * len(engines)]
    by_engine = {e: {r["name"]: r for r in rs} for e, rs in results.items()}
    for case in cases:
        cells = []
        for engine in engines:
            r = by_engine[engine].get(case["name"])
            if r is None:
                cells.append("-")
            elif "error" in r:
                cells.append("fails: " + r["error"].replace("|", "/")[:60])
            else:
                mark = "ok" if r["verdict"] == "ok" else "REJECTS: " + r["verdict"]
                cells.append(f"{r['compile_ms']:.1f} ms, {mark}")
        lines.append(f"| {case['name']} | {len(case['trace']) + 1} | " + " | ".join(cells) + " |")
    return lines


def render_markdown(results: dict[str, list[dict]], cases: list[dict], *, command: str, passes: int,
                    vocab: str, clock: str = "wall") -> str:
    total = len(cases)
    common = set.intersection(*[{r["name"] for r in rs if "error" not in r} for rs in results.values()]) \
        if results else set()
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = [f"Command: `{command}`  ",
           f"{when}; {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, one thread "
           f"per engine; vocabulary {vocab}; {total} schemas, {passes} trace passes each (fresh matcher per "
           "pass; mask time = one bitmask fill; compile = schema to a ready matcher; "
           f"{'process CPU' if clock == 'cpu' else 'wall-clock'} time).", "",
           "### All schemas each engine compiled", "", *_summary_table(results, total, None), ""]
    gaps = _gap_lines(results, None)
    if gaps:
        out += ["Targets (issue 3), on all schemas each engine compiled:", "", *gaps, ""]
    if len(results) > 1:
        out += [f"### The {len(common)} schemas every engine compiled", "",
                *_summary_table(results, total, common), ""]
        gaps = _gap_lines(results, common)
        if gaps:
            out += ["Targets on this common set:", "", *gaps, ""]
    out += ["### Per schema (compile time; trace verdict)", "", *_detail_table(results, cases), ""]
    return "\n".join(out)
