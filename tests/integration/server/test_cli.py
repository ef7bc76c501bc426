"""The `kb-mcp` command as a user runs it: configuration errors, doctor, stats, ingest, export, import, reindex."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kb_mcp.config import Settings

KB_MCP = str(Path(sys.executable).with_name("kb-mcp"))


def run(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "KB_REDIS_URL": str(settings.redis_url), "KB_NAMESPACE": settings.namespace, **env}
    return subprocess.run([KB_MCP, *args], env=full, capture_output=True, text=True, timeout=120)


@pytest.fixture
def cleanup(settings: Settings) -> Iterator[None]:
    yield
    import redis

    client = redis.Redis.from_url(str(settings.redis_url))  # sync client: test-side cleanup only
    with contextlib.suppress(redis.ResponseError):
        client.execute_command("FT.DROPINDEX", f"{{{settings.namespace}}}:idx", "DD")
    client.delete(f"{{{settings.namespace}}}:embedding")
    client.close()


def test_bad_configuration_fails_at_start_naming_the_variable(settings: Settings) -> None:
    """The CLI's side of the settings rules (unit-tested one by one in tests/unit/test_settings.py): exit 2."""
    result = run(settings, "doctor", KB_TIMEOUT_REDIS="-1")
    assert result.returncode == 2
    assert "KB_TIMEOUT_REDIS" in result.stderr and "greater than 0" in result.stderr
    assert result.stdout == ""


def test_configuration_errors_never_echo_secrets(settings: Settings) -> None:
    result = run(settings, "doctor", KB_REDIS_URL="http://user:hunter2@x", KB_AUTH_TOKEN="")
    assert result.returncode == 2 and "KB_REDIS_URL" in result.stderr and "hunter2" not in result.stderr


def test_doctor_reports_ok_on_redis_stack(settings: Settings, cleanup: None) -> None:
    result = run(settings, "doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    for line in ("OK    redis ", "search module", "RediSearch 2.", "embedding model", "384-d", "index"):
        assert line in result.stdout, line
    assert "verdict: OK" in result.stdout or "verdict: WARN" in result.stdout


def test_doctor_fails_clearly_without_redis(settings: Settings) -> None:
    result = run(settings, "doctor", KB_REDIS_URL="redis://127.0.0.1:1/0")
    assert result.returncode == 1
    assert "FAIL" in result.stdout and "nothing is listening at 127.0.0.1:1" in result.stdout
    assert "verdict: FAIL" in result.stdout


def test_ingest_stats_export_import_reindex(settings: Settings, tmp_path: Path, cleanup: None) -> None:
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "a.md").write_text("# Runbook\n\nRestart the ledger service with `systemctl restart ledger`.\n")
    (docs / "sub" / "b.txt").write_text("On-call rotates every Monday at 10:00.\n" * 3)
    (docs / "ignored.bin").write_bytes(b"\x00\x01")
    ingest = run(settings, "ingest", str(docs), "--tag", "runbook")
    assert ingest.returncode == 0, ingest.stderr
    assert "ingested 2 file(s)" in ingest.stderr
    stats = run(settings, "stats")
    assert stats.returncode == 0 and "facts" in stats.stdout
    facts_line = next(line for line in stats.stdout.splitlines() if line.startswith("facts "))
    count = int(facts_line.split()[-1])
    assert count >= 2
    out = tmp_path / "kb.jsonl"
    exported = run(settings, "export", str(out))
    assert exported.returncode == 0 and f"exported {count} fact(s)" in exported.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(r["tags"] == ["runbook"] and r["doc_id"] for r in records)
    imported = run(settings, "import", str(out), KB_NAMESPACE=settings.namespace + "copy")
    assert imported.returncode == 0 and f"imported {count} fact(s)" in imported.stderr
    reindex = run(settings, "reindex")
    assert reindex.returncode == 0 and "re-created" in reindex.stderr
    missing = run(settings, "ingest", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "no such file" in missing.stderr
    run(settings, "reindex", KB_NAMESPACE=settings.namespace + "copy")
    import redis

    client = redis.Redis.from_url(str(settings.redis_url))
    client.execute_command("FT.DROPINDEX", f"{{{settings.namespace}copy}}:idx", "DD")
    client.close()


def test_help_is_useful() -> None:
    result = subprocess.run([KB_MCP, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for command in ("serve", "ingest", "export", "import", "stats", "doctor", "bench"):
        assert command in result.stdout
    serve = subprocess.run([KB_MCP, "serve", "--help"], capture_output=True, text=True, timeout=60)
    assert "--transport" in serve.stdout and "--allow-unauthenticated" in serve.stdout


def test_doctor_warns_when_aof_is_off(settings: Settings, redis_server_factory: Any) -> None:
    import redis

    server = redis_server_factory()
    client = redis.Redis.from_url(server.url)
    client.config_set("appendonly", "no")
    client.close()
    result = run(settings, "doctor", KB_REDIS_URL=server.url)
    assert result.returncode == 0, result.stdout
    assert "WARN  persistence (AOF)" in result.stdout and "appendonly no" in result.stdout
    assert "verdict: WARN" in result.stdout


def test_doctor_warns_when_redis_may_reply_before_the_aof_is_written(settings: Settings,
                                                                     redis_server_factory: Any) -> None:
    server = redis_server_factory(REDIS_APPENDFSYNC="everysec")
    result = run(settings, "doctor", KB_REDIS_URL=server.url)
    assert "WARN  persistence (AOF)" in result.stdout and "can lose up to 2 s of acknowledged writes" in result.stdout
    waiting = run(settings, "doctor", KB_REDIS_URL=server.url, KB_DURABILITY="fsync")
    assert "OK    persistence (AOF)" in waiting.stdout and "KB_DURABILITY=fsync" in waiting.stdout, waiting.stdout
    default = run(settings, "doctor")  # the suite's Redis, started by scripts/redis-stack.sh with its defaults
    assert "OK    persistence (AOF)" in default.stdout and "appendfsync always" in default.stdout, default.stdout


def test_doctor_warns_when_the_index_was_built_with_other_settings(settings: Settings, cleanup: None) -> None:
    built = run(settings, "stats", KB_HNSW_M="8")  # creates the index with M 8
    assert built.returncode == 0, built.stderr
    result = run(settings, "doctor")
    assert "WARN  index settings" in result.stdout and "m 8 (configured 32)" in result.stdout
    assert "kb-mcp reindex" in result.stdout
    assert run(settings, "reindex").returncode == 0
    assert "index settings" not in run(settings, "doctor").stdout
    declared = {"KB_FILTER_FIELDS": "project:tag,priority:numeric"}  # declared after the index was built
    result = run(settings, "doctor", **declared)
    assert "WARN  index settings" in result.stdout and "filter fields (none) (configured KB_FILTER_FIELDS=" \
        "priority:numeric,project:tag)" in result.stdout, result.stdout
    assert run(settings, "reindex", **declared).returncode == 0
    assert "index settings" not in run(settings, "doctor", **declared).stdout


def test_eval_measures_every_mode_on_a_built_in_set_and_on_your_pairs(settings: Settings, tmp_path: Path,
                                                                      cleanup: None) -> None:
    built_in = run(settings, "eval", "--set", "hard", "--facts", "80", "--queries", "24", "--json")
    assert built_in.returncode == 0, built_in.stderr[-2000:]
    scores = json.loads(built_in.stdout)
    assert [s["mode"] for s in scores] == ["hybrid", "vector", "keyword"]
    assert all(s["queries"] == 24 and 0 <= s["recall_at_1"] <= s["recall_at_5"] <= 1 for s in scores)
    assert scores[0]["recall_at_1"] >= scores[1]["recall_at_1"]  # hybrid is never below vector search
    facts = tmp_path / "facts.jsonl"
    facts.write_text(json.dumps({"content": "Ada's cat is called Pixel.", "fact_id": "ada.cat"}) + "\n"
                     + json.dumps({"content": "Deploys happen on Tuesdays.", "fact_id": "ops.deploy"}) + "\n")
    assert run(settings, "import", str(facts)).returncode == 0
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"query": "What is the name of Ada's pet?", "fact_id": "ada.cat"}) + "\n"
                     + json.dumps({"query": "Which weekday do we ship?", "fact_id": "ops.deploy"}) + "\n")
    mine = run(settings, "eval", "--pairs", str(pairs), "--mode", "hybrid")
    assert mine.returncode == 0, mine.stderr[-2000:]
    assert "| pairs:pairs.jsonl | hybrid | 2 | 1.0 |" in mine.stdout
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "no id"}\n')
    refused = run(settings, "eval", "--pairs", str(bad))
    assert refused.returncode == 1 and "bad.jsonl line 1" in refused.stderr
