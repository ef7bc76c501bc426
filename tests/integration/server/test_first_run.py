"""A newcomer's first run, as the README tells it: the local Redis on a port of their choosing (start, status,
stop), a port already taken, argument mistakes read as sentences and counted, the examples, the Inspector over
HTTP."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kb_mcp.config import Settings
from tests.support.mcp import http_server, in_process, kb_env, text
from tests.support.redis import ROOT, free_port

pytestmark = pytest.mark.anyio
SCRIPTS = ROOT / "scripts"


def script(name: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """A script as a newcomer runs it: no KB_REDIS_URL (run.sh starts its own Redis) and none of the REDIS_*
    variables scripts/test.sh exports for the suite's Redis (REDIS_DATA_DIR would point stop at that one)."""
    base = {k: v for k, v in os.environ.items() if k != "KB_REDIS_URL" and not k.startswith("REDIS_")}
    return subprocess.run(["bash", str(SCRIPTS / name), *args], env={**base, **env}, capture_output=True,
                          text=True, timeout=300)


def test_the_redis_run_sh_starts_is_the_one_status_and_stop_find(tmp_path: Path) -> None:
    env = {"REDIS_PORT": str(free_port()), "XDG_DATA_HOME": str(tmp_path)}
    started = script("run.sh", "doctor", **env)
    try:
        assert started.returncode == 0, started.stderr[-2000:]
        assert "verdict: OK" in started.stdout or "verdict: WARN" in started.stdout
        assert (tmp_path / "kb-mcp" / f"redis-{env['REDIS_PORT']}" / "redis.pid").is_file()
        status = script("redis-stack.sh", "status", **env)
        assert status.returncode == 0 and "running pid=" in status.stdout and env["REDIS_PORT"] in status.stdout
    finally:
        stopped = script("redis-stack.sh", "stop", **env)
    assert stopped.returncode == 0 and "stopped" in stopped.stderr, stopped.stderr
    after = script("redis-stack.sh", "status", **env)
    assert after.returncode == 3 and "stopped" in after.stdout


def test_a_port_taken_by_something_else_names_the_variable(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = script("redis-stack.sh", "start", REDIS_PORT=port, XDG_DATA_HOME=str(tmp_path))
    assert result.returncode != 0
    assert f"port {port} is taken by another process" in result.stderr and "REDIS_PORT" in result.stderr


@pytest.mark.parametrize(("tool", "args", "sentence"), [
    ("semantic_search", {"query": "q", "top_k": 500}, "invalid arguments for semantic_search: top_k must be <= 50 "
                                                      "(got 500)"),
    ("semantic_search", {"query": "q", "top_k": "five"}, "top_k must be an integer (got 'five')"),
    ("store_fact", {}, "invalid arguments for store_fact: content is required"),
    ("store_fact", {"content": "x", "tags": ["bad tag"]}, "tags[0] 'bad tag' is not valid: 1-64 characters"),
    ("store_fact", {"content": "x", "metadata": {"deep": {"a": 1}}},
     "metadata.deep must be a string, number, boolean or null (got an object)"),
    ("get_fact", {"limit": 0, "cursor": "x" * 600}, "limit must be >= 1 (got 0); cursor must have at most 512"),
    ("get_fact", {"factId": "x"}, "invalid arguments for get_fact: unknown argument(s) 'factId'"),
    ("remember", {}, "unknown tool 'remember'; the tools are: delete_fact, delete_facts, get_fact, kb_stats, "
                     "semantic_search, store_fact, store_facts, update_fact"),
])
async def test_argument_mistakes_are_sentences(settings: Settings, embedding: Any, tool: str, args: dict[str, Any],
                                               sentence: str) -> None:
    async with in_process(settings, embedding) as (client, _):
        result = await client.call_tool(tool, args)
    message = text(result)
    assert result.is_error and sentence in message, message
    assert "pydantic" not in message and "validation error" not in message and "type=" not in message


async def test_every_rejected_call_is_counted(settings: Settings, embedding: Any) -> None:
    async with in_process(settings, embedding) as (client, holder):
        for args in ({}, {"content": ""}, {"content": 42}, {"content": "x", "tags": "no"}, {"contnt": "x"},
                     {"content": "x", "fact_id": "a b"}):
            assert (await client.call_tool("store_fact", args)).is_error
        await client.call_tool("no_such_tool", {})
        rendered = holder.metrics.render().decode()
    assert 'kb_tool_calls_total{outcome="InvalidInput",tool="store_fact"} 6.0' in rendered
    assert 'kb_tool_calls_total{outcome="UnknownTool",tool="(unknown)"} 1.0' in rendered


def test_the_client_example_runs_as_the_readme_says(settings: Settings) -> None:
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "client.py"), "stdio"], capture_output=True,
                            text=True, timeout=180, env={**os.environ, **kb_env(settings)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "store_fact ->" in result.stdout and "example.client" in result.stdout
    assert "error result -> True" in result.stdout and "fact not found" in result.stdout


def test_the_agent_memory_example_edits_a_fact_and_recalls_the_new_one(settings: Settings) -> None:
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "agent_memory.py")], capture_output=True,
                            text=True, timeout=180, env={**os.environ, **kb_env(settings)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "updated user.timezone, embedded again: True" in result.stdout
    answer = result.stdout.split("What time is it where she lives?")[1].splitlines()[1]
    assert "Tokyo" in answer, result.stdout


@pytest.mark.skipif(shutil.which("npx") is None and not os.environ.get("KB_REQUIRE_INSPECTOR"),
                    reason="npx (Node.js) not installed")
def test_the_inspector_over_http(settings: Settings) -> None:
    with http_server(settings) as base:
        result = subprocess.run(["npx", "-y", "@modelcontextprotocol/inspector@0.15.0", "--cli", base + "/mcp",
                                 "--transport", "http", "--method", "tools/list"],
                                capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "store_fact" in {t["name"] for t in json.loads(result.stdout)["tools"]}


async def test_never_connected_says_how_to_start_redis(make_settings: Any, embedding: Any) -> None:
    settings = make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    async with in_process(settings, embedding) as (client, _):
        result = await client.call_tool("get_fact", {"fact_id": "x"})
    assert result.is_error and "nothing is listening at 127.0.0.1:" in text(result)
    assert "scripts/run.sh" in text(result) and "KB_REDIS_URL" in text(result) and "retry shortly" not in text(result)

