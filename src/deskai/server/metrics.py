"""Prometheus metrics at GET /metrics (prometheus-client), one registry per app.

Counters and histograms are fed from the two places that see every request and every token:
the request-log middleware (requests by route and status) and ``DeltaStream`` (tokens, time
to first token, inter-token latency). Gauges — queue depth, running requests, loaded models,
KV cache use — come from each engine's stats snapshot (taken under its lock) at scrape time.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from deskai.runtime.manager import ModelManager

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServerMetrics:
    def __init__(self, manager: ModelManager) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("deskai_requests", "HTTP requests by route, method and status",
                                ["route", "method", "status"], registry=self.registry)
        self.prompt_tokens = Counter("deskai_prompt_tokens", "Prompt tokens processed",
                                     ["model"], registry=self.registry)
        self.generated_tokens = Counter("deskai_generated_tokens", "Tokens generated",
                                        ["model"], registry=self.registry)
        self.time_to_first_token = Histogram(
            "deskai_time_to_first_token_seconds", "From request to its first token",
            ["model"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.inter_token_latency = Histogram(
            "deskai_inter_token_latency_seconds", "Between consecutive streamed tokens",
            ["model"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.registry.register(EngineCollector(manager))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class EngineCollector(Collector):
    """Gauges read from the loaded engines whenever /metrics is scraped."""

    def __init__(self, manager: ModelManager) -> None:
        self.manager = manager

    def collect(self) -> Iterator[Metric]:
        waiting = GaugeMetricFamily("deskai_queue_depth", "Requests waiting for a slot",
                                    labels=["model"])
        running = GaugeMetricFamily("deskai_running_requests", "Requests holding a slot",
                                    labels=["model"])
        loaded = GaugeMetricFamily("deskai_loaded_models", "Models loaded in memory")
        kv_used = GaugeMetricFamily("deskai_kv_cache_tokens", "KV cache tokens held by "
                                    "running requests", labels=["model"])
        kv_capacity = GaugeMetricFamily("deskai_kv_cache_capacity_tokens",
                                        "KV cache size in tokens (all slots)", labels=["model"])
        models = self.manager.loaded()
        loaded.add_metric([], len(models))
        for model in models:
            if model.facts.kind != "text":
                continue
            stats = model.engine.stats()
            # names over one base share its engine: count each name's own requests
            usage = stats.of_adapter(model.adapter)
            waiting.add_metric([model.name], usage.waiting)
            running.add_metric([model.name], usage.running)
            kv_used.add_metric([model.name], usage.kv_used_tokens)
            kv_capacity.add_metric([model.name], stats.kv_capacity_tokens)
        yield from (waiting, running, loaded, kv_used, kv_capacity)
