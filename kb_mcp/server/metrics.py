"""Prometheus metrics for operators: one registry per server (no process-global state), scraped at /metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from kb_mcp.config import TimeoutKind
from kb_mcp.connection.manager import ManagerState

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0)
_BREAKER_VALUE = {"closed": 0, "half-open": 1, "open": 2}
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """Tool calls (duration, outcome), bounded operations (duration, timeouts), breaker, pool and fact count."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.tool_duration = Histogram("kb_tool_call_duration_seconds", "Duration of MCP tool calls", ["tool"],
                                       buckets=_LATENCY_BUCKETS, registry=r)
        self.tool_calls = Counter("kb_tool_calls_total", "MCP tool calls by outcome", ["tool", "outcome"], registry=r)
        self.op_duration = Histogram("kb_operation_duration_seconds", "Duration of bounded operations by kind",
                                     ["kind"], buckets=_LATENCY_BUCKETS, registry=r)
        self.op_timeouts = Counter("kb_operation_timeouts_total", "Operations that hit their standard timeout",
                                   ["kind"], registry=r)
        self.breaker_state = Gauge("kb_circuit_breaker_state", "Redis circuit breaker: 0 closed, 1 half-open, 2 open",
                                   registry=r)
        self.breaker_failures = Gauge("kb_circuit_breaker_consecutive_failures", "Straight Redis failures",
                                      registry=r)
        self.pool_in_use = Gauge("kb_redis_pool_connections_in_use", "Redis connections checked out", registry=r)
        self.pool_max = Gauge("kb_redis_pool_connections_max", "Redis pool size limit", registry=r)
        self.facts = Gauge("kb_facts", "Facts in the namespace index", ["namespace"], registry=r)
        self.in_flight = Gauge("kb_tool_calls_in_flight", "Tool calls being served", registry=r)
        self.facts_deleted = Counter("kb_facts_deleted_total", "Facts deleted, by tool", ["tool"], registry=r)
        self.fact_updates = Counter("kb_fact_updates_total", "update_fact calls, by whether the content was embedded "
                                    "again", ["re_embedded"], registry=r)
        self.tokens_refused = Counter("kb_auth_tokens_refused_total", "Bearer tokens refused, by reason",
                                      ["reason"], registry=r)
        self.query_cache = Gauge("kb_query_embedding_cache", "Query embedding cache lookups by result",
                                 ["result"], registry=r)
        self.query_cache_hit_ratio = Gauge("kb_query_embedding_cache_hit_ratio",
                                           "Share of search queries whose embedding came from the cache", registry=r)

    def observe_operation(self, kind: TimeoutKind, op: str, seconds: float, timed_out: bool) -> None:
        """The `bounded()` observer: per-kind latency and timeouts (op names stay out of labels: unbounded)."""
        self.op_duration.labels(kind).observe(seconds)
        if timed_out:
            self.op_timeouts.labels(kind).inc()

    def rejected(self, tool: str, outcome: str = "InvalidInput") -> None:
        """A call refused before it ran (schema validation, unknown argument or tool): counted, not timed."""
        self.tool_calls.labels(tool, outcome).inc()

    def observe_call(self, tool: str, outcome: str, seconds: float) -> None:
        self.tool_duration.labels(tool).observe(seconds)
        self.tool_calls.labels(tool, outcome).inc()

    def set_redis(self, state: ManagerState) -> None:
        self.breaker_state.set(_BREAKER_VALUE.get(state.breaker, 2))
        self.breaker_failures.set(state.consecutive_failures)
        self.pool_in_use.set(state.pool_in_use)
        self.pool_max.set(state.pool_max)

    def set_query_cache(self, hits: int, misses: int) -> None:
        self.query_cache.labels("hit").set(hits)
        self.query_cache.labels("miss").set(misses)
        self.query_cache_hit_ratio.set(hits / (hits + misses) if hits + misses else 0.0)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def summarize_remote(base_url: str, token: str | None = None) -> str:
    """The numbers of a running server's /metrics, as a table for a person (`kb-mcp stats --server URL`)."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.get(base_url.rstrip("/") + "/metrics", headers=headers, timeout=5)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        return f"server metrics: cannot read {base_url}/metrics ({exc})"
    calls: dict[str, dict[str, float]] = {}
    durations: dict[str, list[float]] = {}
    lines: list[str] = []
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "kb_tool_calls_total":
                calls.setdefault(labels["tool"], {})[labels["outcome"]] = sample.value
            elif sample.name in ("kb_tool_call_duration_seconds_sum", "kb_tool_call_duration_seconds_count"):
                durations.setdefault(labels["tool"], [0.0, 0.0])[sample.name.endswith("_count")] = sample.value
            elif sample.name == "kb_operation_timeouts_total":
                lines.append(f"timeouts ({labels['kind']}): {int(sample.value)}")
            elif sample.name in ("kb_circuit_breaker_state", "kb_redis_pool_connections_in_use", "kb_facts",
                                 "kb_tool_calls_in_flight"):
                suffix = f" [{labels['namespace']}]" if "namespace" in labels else ""
                lines.append(f"{sample.name}{suffix}: {sample.value:g}")
    table = ["tool               calls  mean ms  outcomes"]
    for tool, outcomes in sorted(calls.items()):
        total, count = durations.get(tool, [0.0, 0.0])
        mean = total / count * 1000 if count else 0.0
        spread = ", ".join(f"{k} {int(v)}" for k, v in sorted(outcomes.items()))
        table.append(f"{tool:<17} {int(sum(outcomes.values())):>6}  {mean:>7.1f}  {spread}")
    return "\n".join([f"server {base_url}:", *table, *lines])
