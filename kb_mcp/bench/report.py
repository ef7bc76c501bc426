"""Bench output: the Markdown table (README and docs/benchmark) and the latency-vs-concurrency plot."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from kb_mcp.bench.scale import EF_RUNTIMES
from kb_mcp.bench.support import Result, say


def table_row(label: str, columns: list[Result], get: Callable[[Result], Any]) -> str:
    """One Markdown table row: `get` of each column, "-" where that column lacks the figure."""
    cells = []
    for column in columns:
        try:
            cells.append(str(get(column)))
        except (KeyError, IndexError, TypeError):
            cells.append("-")
    return f"| {label} | " + " | ".join(cells) + " |"


def markdown(report: Result) -> str:
    lines = [f"kb-mcp {report['kb_mcp']} · {report['date']} · {report['machine']['cpus']} cores · "
             f"Python {report['machine']['python']} · index {report['settings']['vector_algorithm']} "
             f"(M {report['settings']['hnsw_m']}, EF_RUNTIME {report['settings']['hnsw_ef_runtime']})", ""]
    header = "| measure | " + " | ".join(f"{r['facts']:,} facts" for r in report["runs"]) + " |"
    lines += [header, "|---|" + "---|" * len(report["runs"])]

    def row(label: str, get: Callable[[Result], Any]) -> None:
        lines.append(table_row(label, report["runs"], get))

    def lat(d: Result) -> str:
        return f"{d['p50']} / {d['p95']} / {d['p99']}"

    def level(i: int) -> Callable[[Result], str]:
        def cell(r: Result) -> str:
            lv = r["http"]["semantic_search_by_concurrency"][i]
            return f"{lv['calls_per_s']} · {lv['p50']} / {lv['p99']}"

        return cell

    row("semantic_search, 1 client, HTTP: p50 / p95 / p99 ms",
        lambda r: lat(r["http"]["semantic_search_1_client_ms"]))
    row("semantic_search, 1 client, stdio: p50 / p95 / p99 ms",
        lambda r: lat(r["stdio"]["semantic_search_1_client_ms"]))
    for i, lv in enumerate(report["runs"][0]["http"]["semantic_search_by_concurrency"]):
        row(f"semantic_search, {lv['clients']} clients: searches/s · p50 / p99 ms", level(i))
    row("store_fact, 1 client: p50 / p95 / p99 ms", lambda r: lat(r["http"]["store_fact_1_client_ms"]))
    row("store_fact, 10 clients: stores/s · p99 ms", lambda r: f"{r['http']['store_fact_10_clients']['calls_per_s']} · "
                                                              f"{r['http']['store_fact_10_clients']['p99']}")
    row("store_fact with KB_DURABILITY=fsync: p50 / p95 / p99 ms", lambda r: lat(r["fsync"]["store_fact_1_client_ms"]))
    row("store_fact one at a time vs store_facts in batches of 100: facts/s",
        lambda r: f"{r['http'].get('store_fact_facts_per_s', '-')} vs "
                  f"{r['http'].get('store_facts_batch_100_facts_per_s', '-')}")
    row("get_fact by id: p50 / p95 / p99 ms", lambda r: lat(r["http"]["get_fact_by_id_ms"]))
    row("bulk ingest (embed + pipelined writes): facts/s", lambda r: r["bulk_ingest_facts_per_s"])
    row("import with vectors (write path alone): facts/s", lambda r: r["import_with_vectors_facts_per_s"])
    row("floor: embedding alone, p50 / p95 ms", lambda r: f"{r['floors']['embedding_ms']['p50']} / "
                                                          f"{r['floors']['embedding_ms']['p95']}")
    row("floor: raw FT.SEARCH KNN, p50 / p95 ms", lambda r: f"{r['floors']['ft_search_knn_ms']['p50']} / "
                                                            f"{r['floors']['ft_search_knn_ms']['p95']}")
    row("floor: raw redis.asyncio HSET+HGETALL ops/s (50 conc.)", lambda r: r["floors"]["raw_redis_ops_per_s"])
    row("AsyncRedisManager ops/s · overhead vs raw", lambda r: f"{r['floors']['manager_ops_per_s']} · "
                                                              f"{r['floors']['manager_overhead_pct']} %")
    row("search by mode, store only, embedding cached: vector / hybrid / keyword p50 ms",
        lambda r: " / ".join(str(r["search_modes_ms"][m]["p50"]) for m in ("vector", "hybrid", "keyword"))
        if "search_modes_ms" in r else "-")
    row("search by mode, store only, embedded each time: vector / hybrid p50 ms",
        lambda r: " / ".join(str(r["search_modes_uncached_ms"][m]["p50"]) for m in ("vector", "hybrid"))
        if "search_modes_uncached_ms" in r else "-")
    row("recall@10 of the served index vs exact", lambda r: r["recall"]["recall_at_10_vs_exact"])
    row("paraphrase recall@1 (query -> its fact)", lambda r: r["recall"]["paraphrase_recall_at_1"])
    row("kb-mcp server peak RSS, MB", lambda r: round(r["server_rss_mb"]))
    lines += ["", *floor_breakdown(report)]
    return "\n".join(lines) + "\n"


def floor_breakdown(report: Result) -> list[str]:
    """Single-client p50 against the sum of its floors, per transport, measured in the same run: the protocol's
    own round trip, the model alone (synchronous), a raw KNN (or a raw HSET of a fact hash, for stores)."""
    lines = ["Floor breakdown, 1 client, p50 ms (ratio = kb-mcp / sum of floors):", "",
             "| facts | transport | ping | embedding | raw KNN | floors | search (vector) | ratio | search (hybrid) | "
             "ratio | raw HSET | store floors | store_fact | ratio |", "|" + "---|" * 14]
    for r in report["runs"]:
        floors = r.get("floors", {})
        for transport in ("stdio", "http"):
            side = r.get(transport, {})
            try:
                ping, embed = side["protocol_ping_ms"]["p50"], floors["embedding_alone_sync_ms"]["p50"]
                knn, hset = floors["ft_search_knn_ms"]["p50"], floors["hset_fact_ms"]["p50"]
                vector = side["semantic_search_vector_1_client_ms"]["p50"]
                hybrid = side["semantic_search_1_client_ms"]["p50"]
                store = side["store_fact_1_client_ms"]["p50"]
            except KeyError:
                continue
            search_floor, store_floor = ping + embed + knn, ping + embed + hset
            lines.append(f"| {r['facts']:,} | {transport} | {ping} | {embed} | {knn} | {search_floor:.2f} | {vector} | "
                         f"{vector / search_floor:.2f}x | {hybrid} | {hybrid / search_floor:.2f}x | {hset} | "
                         f"{store_floor:.2f} | {store} | {store / store_floor:.2f}x |")
    return lines


def plot(report: Result, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # the bench extra is not installed: the JSON and Markdown are still written
        say("matplotlib not installed (pip install 'kb-mcp[bench]'): no plot")
        return
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for run in report["runs"]:
        levels = run["http"]["semantic_search_by_concurrency"]
        xs = [lv["clients"] for lv in levels]
        left.plot(xs, [lv["p50"] for lv in levels], marker="o", label=f"{run['facts']:,} facts p50")
        left.plot(xs, [lv["p99"] for lv in levels], marker="x", linestyle="--", label=f"{run['facts']:,} facts p99")
        right.plot(xs, [lv["calls_per_s"] for lv in levels], marker="o", label=f"{run['facts']:,} facts")
    left.set(xlabel="concurrent MCP clients (HTTP)", ylabel="semantic_search latency, ms", xscale="log",
             yscale="log", title="Latency vs concurrency")
    right.set(xlabel="concurrent MCP clients (HTTP)", ylabel="searches / s", xscale="log",
              title="Throughput vs concurrency")
    for ax in (left, right):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def scale_markdown(report: Result) -> str:
    """The `--scale` run as a table (a column per size) plus the export, restart and re-embed lines."""
    run = report["scale"]
    hnsw = run["hnsw"]
    lines = [f"kb-mcp {report['kb_mcp']} · {report['date']} · {report['machine']['cpus']} cores · one namespace, "
             f"synthetic facts imported with vectors · HNSW M {hnsw['m']}, EF_CONSTRUCTION {hnsw['ef_construction']}"
             f", EF_RUNTIME {hnsw['ef_runtime']}", ""]
    steps = run["steps"]
    lines += ["| measure | " + " | ".join(f"{s['facts']:,} facts" for s in steps) + " |",
              "|---|" + "---|" * len(steps)]

    def row(label: str, get: Callable[[Result], Any]) -> None:
        lines.append(table_row(label, steps, get))

    def ef(value: int) -> Callable[[Result], str]:
        def cell(s: Result) -> str:
            found = {e["ef_runtime"]: e for e in s["recall"]["by_ef_runtime"]}[value]  # absent: KeyError, "-"
            return f"{found['recall_at_10']} · {found['ft_search_ms']['p50']} ms"
        return cell

    row("import with vectors (this step's facts), facts/s", lambda s: s["import_facts_per_s"])
    row("import until fully indexed, s", lambda s: s["until_indexed_s"])
    row("semantic_search 1 client (hybrid) p50 / p95 ms",
        lambda s: f"{s['mcp']['search_1_client_ms']['p50']} / {s['mcp']['search_1_client_ms']['p95']}")
    row("semantic_search 1 client (vector) p50 / p95 ms",
        lambda s: f"{s['mcp']['search_vector_1_client_ms']['p50']} / {s['mcp']['search_vector_1_client_ms']['p95']}")
    row("semantic_search 10 in flight: calls/s · p50 / p95 ms", lambda s: (
        f"{s['mcp']['search_10_clients']['calls_per_s']} · {s['mcp']['search_10_clients']['p50']} / "
        f"{s['mcp']['search_10_clients']['p95']}"))
    row("store_facts through MCP, batches of 100: facts/s", lambda s: s["mcp"]["store_facts_batch_100_facts_per_s"])
    row("served vector recall@10 vs exact", lambda s: s["recall"]["served_vector_recall_at_10"])
    for value in EF_RUNTIMES:
        row(f"raw KNN recall@10 · FT.SEARCH p50, EF_RUNTIME {value}", ef(value))
    row("paraphrase recall@1 (hybrid)", lambda s: s["recall"]["paraphrase_recall_at_1_hybrid"])
    row("Redis used memory, MB", lambda s: s["redis_memory"]["used_memory_mb"])
    row("Redis memory per fact, bytes", lambda s: s["redis_memory"]["bytes_per_fact"])
    row("of it: vector index, MB", lambda s: s["redis_memory"]["index"]["vector_index_sz_mb"])
    row("kb-mcp server peak RSS, MB", lambda s: s["mcp"]["server_rss_mb"])
    if "export" in run:
        e = run["export"]
        lines += ["", f"- export at {e['facts']:,} facts: {e['seconds']} s ({e['facts_per_s']} facts/s, "
                      f"{e['file_mb']} MB)"]
    if "restart" in run:
        r = run["restart"]
        lines += [f"- restart at {r['facts']:,} facts (AOF compacted first, {r.get('aof_rewrite_s', '-')} s): stop "
                  f"{r['stop_s']} s; Redis answers after "
                  f"{r.get('redis_answers_s', '-')} s, first search answered after "
                  f"{r.get('first_search_answered_s', '-')} s, index whole after {r.get('index_whole_s', '-')} s"]
        lines += [f"  - +{t['t_s']} s: redis {t['redis']} ({t['percent_indexed']} % indexed); "
                  f"/health {t['health']}; semantic_search: {t['semantic_search']['said']}; "
                  f"doctor: {t['doctor'] or '-'}"
                  for t in r["timeline"]]
    if "re_embed" in run:
        r = run["re_embed"]
        lines += [f"- reindex --re-embed: {r['facts']:,} facts in {r['seconds']} s ({r['facts_per_s']} facts/s), "
                  f"longest step {r['longest_step_s']} s"]
    for trial in run.get("hnsw_sweep", []):
        best = ", ".join(f"ef {e['ef_runtime']}: {e['recall_at_10']}" for e in trial["recall"]["by_ef_runtime"])
        lines.append(f"- sweep M {trial['m']} EF_CONSTRUCTION {trial['ef_construction']}: import "
                     f"{trial['import_facts_per_s']} facts/s, indexed in {trial['until_indexed_s']} s, "
                     f"{trial['redis_memory']['bytes_per_fact']} B/fact; recall@10 {best}")
    return "\n".join(lines) + "\n"
