"""Prometheus metrics of the server, in a registry of its own (one per app, so tests can build many apps).

Latencies are observed per request as its outputs arrive; engine state (requests running / waiting /
waiting for a grammar, KV usage, grammar compile time and cache hits) is read from the engine's stats at
scrape time, so it is never stale and costs nothing between scrapes.
"""
from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from lightllm_struct.request import RequestOutput

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

# Engine stats keys -> (metric name, help, kind). The engine side fills a flat dict of numbers.
_ENGINE_METRICS = {
    "num_running": ("llms_requests_running", "Requests in the running batch", "gauge"),
    "num_waiting": ("llms_requests_waiting", "Requests waiting to be scheduled", "gauge"),
    "num_waiting_for_grammar": ("llms_requests_waiting_for_grammar",
                                "Requests waiting for their grammar to compile", "gauge"),
    "kv_usage": ("llms_kv_cache_usage_ratio", "Fraction of KV slots in use", "gauge"),
    "kv_free_slots": ("llms_kv_cache_free_slots", "Free KV slots", "gauge"),
    "kv_total_slots": ("llms_kv_cache_total_slots", "All KV slots", "gauge"),
    "grammar_compile_seconds_total": ("llms_grammar_compile_seconds", "Time spent compiling grammars",
                                      "counter"),
    "grammar_compiles_total": ("llms_grammar_compiles", "Grammars compiled", "counter"),
    "grammar_cache_hits_total": ("llms_grammar_cache_hits", "Grammar cache hits", "counter"),
    "grammar_cache_entries": ("llms_grammar_cache_entries", "Compiled grammars (and compile failures) cached",
                              "gauge"),
    "grammar_cache_bytes": ("llms_grammar_cache_bytes", "Estimated bytes of the cached compiled grammars", "gauge"),
    "grammar_cache_evictions_total": ("llms_grammar_cache_evictions", "Compiled grammars evicted", "counter"),
    "server_tracking_cache_bytes": ("llms_tracking_cache_bytes",
                                    "Estimated bytes of the server's cached tool-call tracking grammars", "gauge"),
}


class _EngineCollector:
    def __init__(self, stats: Callable[[], dict[str, float]]) -> None:
        self._stats = stats

    def collect(self):
        stats = self._stats()
        for key, (name, doc, kind) in _ENGINE_METRICS.items():
            if key not in stats:
                continue
            family = GaugeMetricFamily(name, doc) if kind == "gauge" else CounterMetricFamily(name, doc)
            family.add_metric([], float(stats[key]))
            yield family


class ServerMetrics:
    """The metric objects of one server, plus the per-request tracker that feeds them."""

    def __init__(self, engine_stats: Callable[[], dict[str, float]]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.ttft = Histogram("llms_time_to_first_token_seconds", "Time to first token", buckets=_LATENCY_BUCKETS,
                              registry=r)
        self.itl = Histogram("llms_inter_token_latency_seconds", "Time between output tokens",
                             buckets=_LATENCY_BUCKETS, registry=r)
        self.e2e = Histogram("llms_request_latency_seconds", "Request latency, arrival to last token",
                             buckets=_LATENCY_BUCKETS, registry=r)
        self.finished = Counter("llms_requests_finished", "Finished requests", ["finish_reason"], registry=r)
        self.prompt_tokens = Counter("llms_prompt_tokens", "Prompt tokens processed", registry=r)
        self.output_tokens = Counter("llms_generation_tokens", "Tokens generated", registry=r)
        self.errors = Counter("llms_request_errors", "Requests answered with an error", ["status"], registry=r)
        r.register(_EngineCollector(engine_stats))

    def track(self) -> RequestTracker:
        return RequestTracker(self)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class RequestTracker:
    """Observes the latencies of one request from its stream of outputs."""

    def __init__(self, metrics: ServerMetrics) -> None:
        self.m = metrics
        self.start = time.monotonic()
        self.last_time: float | None = None
        self.last_tokens = 0

    def on_output(self, out: RequestOutput) -> None:
        now = time.monotonic()
        new = out.num_output_tokens - self.last_tokens
        if new > 0:
            if self.last_time is None:
                self.m.ttft.observe(now - self.start)
                new -= 1  # the first token's latency is the TTFT, not an inter-token gap
            elif new:
                gap = (now - self.last_time) / new
                for _ in range(new):
                    self.m.itl.observe(gap)
            self.last_time, self.last_tokens = now, out.num_output_tokens
        if out.finished:
            self.m.e2e.observe(now - self.start)
            self.m.finished.labels(out.finish_reason or "unknown").inc()
            self.m.prompt_tokens.inc(out.num_prompt_tokens)
            self.m.output_tokens.inc(out.num_output_tokens)
