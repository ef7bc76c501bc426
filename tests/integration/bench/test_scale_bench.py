"""`kb-mcp bench --scale` end to end at a small size: one namespace grown by importing exports with vectors, recall
against exact search, search through MCP, export, a real Redis restart under a running server, re-embedding."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

KB_MCP = str(Path(sys.executable).with_name("kb-mcp"))


def test_scale_bench_grows_one_namespace_and_watches_a_restart(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "KB_REDIS_URL"}  # its own Redis, which it restarts
    out = tmp_path / "out"
    done = subprocess.run([KB_MCP, "bench", "--scale", "--facts", "600,300", "--queries", "5", "--seconds", "1",
                           "--out", str(out), "--cache", str(tmp_path / "cache"), "--re-embed",
                           "--hnsw-sweep", "8:50"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    run = json.loads((out / "scale.json").read_text())["scale"]
    steps = run["steps"]
    assert [s["facts"] for s in steps] == [300, 600]  # sizes in growing order, each a prefix of the next
    assert [s["imported"] for s in steps] == [300, 300]
    for step in steps:
        by_ef = {e["ef_runtime"]: e["recall_at_10"] for e in step["recall"]["by_ef_runtime"]}
        assert by_ef[200] >= 0.95  # a wrong id <-> row mapping would score ~0
        assert step["recall"]["served_vector_recall_at_10"] >= 0.9
        assert step["redis_memory"]["bytes_per_fact"] > 2 * 384 * 4  # the hash's vector and the index's copy
        assert step["mcp"]["search_1_client_ms"]["n"] == 5 and step["mcp"]["search_10_clients"]["errors"] == 0
        assert step["mcp"]["store_facts_batch_100_facts_per_s"] > 0
    assert run["export"]["facts"] == 600  # the store_facts batches were deleted again
    restart = run["restart"]
    assert restart["facts"] == 600 and restart["index_whole_s"] >= restart["redis_answers_s"] >= 0
    assert restart["timeline"][-1]["semantic_search"]["hits"] == 5 and restart["timeline"][-1]["redis"] == "ok"
    assert restart["timeline"][-1]["health"].startswith("200")
    assert run["re_embed"]["facts"] == 600 and run["re_embed"]["skipped"] == 0
    assert run["hnsw_sweep"][0]["m"] == 8 and run["hnsw_sweep"][0]["imported"] == 300
    table = (out / "scale.md").read_text()
    assert "| 300 facts | 600 facts |" in table and "restart at 600 facts" in table
    assert list((tmp_path / "cache").glob("synthetic-seed7-600-*.f32"))
