"""Property-based bad input through a real `mcp.Client` (hypothesis, >= 2,000 calls per tool).

For every generated call: an error result names a field of the tool; a call the oracle knows to be invalid is an
error; a rejected call changes nothing (every fact's key and updated_at, and the count, are compared); the server
stays up (a known-good call still works after each example)."""

from __future__ import annotations

import asyncio
import math
import os
import re
import threading
from collections.abc import Awaitable, Iterator
from typing import Any, TypeVar

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client
from mcp.types import CallToolResult

from kb_mcp.config import Settings
from kb_mcp.embeddings.onnx import OnnxMiniLMEmbedding
from kb_mcp.server.app import build_server

T = TypeVar("T")
EXAMPLES = int(os.environ.get("KB_PROPERTY_EXAMPLES", "2000"))
pytestmark = pytest.mark.slow  # thousands of generated calls; CI runs them all
FACT_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
PARAMS = {
    "store_fact": {"content", "metadata", "tags", "fact_id", "ttl_s"},
    "get_fact": {"fact_id", "query", "tags", "limit", "cursor", "created_after", "created_before"},
    "semantic_search": {"query", "top_k", "tags", "min_score", "mode", "created_after", "created_before"},
    "delete_fact": {"fact_id"},
    "kb_stats": set(),
}


class LoopThread:
    """One event loop in a thread holding one open MCP client for all examples (hypothesis drives sync tests)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Awaitable[T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class Harness:
    def __init__(self, settings: Settings, embedding: OnnxMiniLMEmbedding) -> None:
        self.settings = settings
        self.embedding = embedding
        self.prefix = f"{{{settings.namespace}}}:fact:"
        self.runner = LoopThread()
        self._stop: asyncio.Event | None = None
        self.client: Client | None = None
        self.redis: aioredis.Redis | None = None
        ready = threading.Event()
        self._task = asyncio.run_coroutine_threadsafe(self._hold(ready), self.runner.loop)
        assert ready.wait(60), "MCP client did not connect"

    async def _hold(self, ready: threading.Event) -> None:
        self._stop = asyncio.Event()
        mcp, _ = build_server(self.settings, embedding=self.embedding)
        self.redis = aioredis.Redis.from_url(str(self.settings.redis_url))
        async with Client(mcp) as client:
            self.client = client
            ready.set()
            await self._stop.wait()
        await self.redis.execute_command("FT.DROPINDEX", f"{{{self.settings.namespace}}}:idx", "DD")
        await self.redis.aclose()

    def call(self, tool: str, args: dict[str, Any]) -> CallToolResult:
        assert self.client is not None
        return self.runner.run(self.client.call_tool(tool, args))

    def snapshot(self) -> dict[bytes, bytes | None]:
        """Every fact key of the namespace (listed through its index: O(namespace), not O(keyspace)) with its
        updated_at, plus the count."""
        async def take() -> dict[bytes, bytes | None]:
            assert self.redis is not None
            reply = await self.redis.execute_command("FT.SEARCH", f"{{{self.settings.namespace}}}:idx", "*",
                                                     "NOCONTENT", "LIMIT", 0, 10_000)
            keys = sorted(reply[1:])
            pipe = self.redis.pipeline(transaction=False)
            for key in keys:
                pipe.hget(key, "updated_at")
            state = dict(zip(keys, await pipe.execute(), strict=True))
            state[b"#count"] = str(reply[0]).encode()
            return state

        return self.runner.run(take())

    def close(self) -> None:
        assert self._stop is not None
        self.runner.loop.call_soon_threadsafe(self._stop.set)
        self._task.result(30)
        self.runner.close()


@pytest.fixture(scope="module")
def harness(redis_url: str, embedding: OnnxMiniLMEmbedding) -> Iterator[Harness]:
    import uuid

    settings = Settings(redis_url=redis_url, namespace="prop" + uuid.uuid4().hex[:10])  # type: ignore[arg-type]
    h = Harness(settings, embedding)
    h.call("store_fact", {"content": "A fact that must survive every rejected call", "fact_id": "anchor"})
    yield h
    h.close()


# ---------------------------------------------------------------- strategies

NASTY = ["", " ", "\x00", "\n\t", "*", "@text:(x)", "{a|b}", "-foo", '"', "'", "\\", "%%", "~x", ":", ";", "|",
         "../../etc/passwd", "..\\..\\win", "a" * 129, "é" * 40, "日本語のテキスト", "\u202e\u200b", "x" * 40_000,
         "kb:fact:*", "FT.SEARCH", "@tags:{secret}", "anchor", "user.tz", "ok-id_1.2:3"]
json_scalar = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                        st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40))
any_json = st.recursive(json_scalar, lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=6)
text_value = st.one_of(st.sampled_from(NASTY), st.text(max_size=80),
                       st.text(alphabet=st.characters(codec="utf-8"), max_size=20))
ident = st.one_of(st.sampled_from(["anchor", "p.1", "p.2", "p:3", "P-4"]), text_value, any_json)
tags_value = st.one_of(st.none(), st.lists(st.one_of(st.sampled_from(["ok", "Ok", "a:b", "x/y"]), text_value),
                                           max_size=4), st.lists(st.just("t"), min_size=33, max_size=34), any_json)
numbers = st.one_of(st.integers(min_value=-5, max_value=150), st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([0, 1, 50, 51, 100, 101, -1, 2**63]), any_json)
metadata_value = st.one_of(st.dictionaries(st.text(max_size=10), json_scalar, max_size=4),
                           st.dictionaries(st.text(max_size=3), any_json, max_size=3), any_json)
extra = st.dictionaries(st.sampled_from(["tag", "factId", "k", "top-k", "limit_"]), any_json, max_size=1)

FIELDS: dict[str, Any] = {
    "content": st.one_of(text_value, any_json), "metadata": metadata_value, "tags": tags_value, "fact_id": ident,
    "query": st.one_of(text_value, any_json), "limit": numbers, "cursor": st.one_of(text_value, any_json),
    "top_k": numbers, "min_score": numbers,
    "ttl_s": numbers, "created_after": st.one_of(text_value, any_json, st.just("2026-01-01T00:00:00Z")),
    "created_before": st.one_of(text_value, any_json, st.just("2030-01-01")),
    "mode": st.one_of(st.sampled_from(["hybrid", "vector", "keyword", "Hybrid", "fuzzy", ""]), any_json),
}


def args_for(tool: str) -> st.SearchStrategy[dict[str, Any]]:
    optional = {name: FIELDS[name] for name in PARAMS[tool]}
    base = st.fixed_dictionaries({}, optional=optional)
    return st.tuples(base, extra).map(lambda pair: {**pair[0], **pair[1]})


# ---------------------------------------------------------------- oracle


def certainly_invalid(tool: str, args: dict[str, Any]) -> str | None:
    """A reason when the call is invalid beyond doubt (else None: it may be valid)."""
    if set(args) - PARAMS[tool]:
        return "unknown argument"
    if tool == "store_fact" and "content" not in args:
        return "content missing"
    if tool in ("semantic_search",) and "query" not in args:
        return "query missing"
    if tool == "delete_fact" and "fact_id" not in args:
        return "fact_id missing"
    content = args.get("content")
    if isinstance(content, str) and (not content.strip() or len(content) > 32_768):
        return "bad content"
    fid = args.get("fact_id")
    if isinstance(fid, str) and not FACT_ID_RE.match(fid):
        return "bad fact_id"
    for name, low, high in (("top_k", 1, 50), ("limit", 1, 100)):
        value = args.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and not low <= value <= high:
            return f"bad {name}"
    score = args.get("min_score")
    # NaN and infinity cannot cross JSON: the client sends them as null, which is a valid min_score. Only a finite
    # out-of-range number is certainly invalid (the store rejects NaN/inf itself: tests/test_store.py).
    if isinstance(score, int | float) and not isinstance(score, bool) and math.isfinite(score) \
            and not -1 <= score <= 1:
        return "bad min_score"
    tags = args.get("tags")
    if isinstance(tags, list) and len(tags) > 32:
        return "too many tags"
    if "mode" in args and args["mode"] not in ("hybrid", "vector", "keyword"):
        return "bad mode"
    return None


def check(h: Harness, tool: str, args: dict[str, Any]) -> None:
    before = h.snapshot() if tool in ("store_fact", "delete_fact") else None
    result = h.call(tool, args)
    message = "\n".join(getattr(c, "text", "") for c in result.content)
    reason = certainly_invalid(tool, args)
    if reason is not None:
        assert result.is_error, (reason, args, message)
    if result.is_error:
        assert any(name in message for name in PARAMS[tool] | {"unknown argument"}), (args, message)
        assert "Traceback" not in message and "redis.exceptions" not in message and "Error 111" not in message
        if before is not None:
            assert h.snapshot() == before, (args, message)
    else:
        assert result.structured_content is not None
    alive = h.call("get_fact", {"fact_id": "anchor"})
    assert not alive.is_error, "\n".join(getattr(c, "text", "") for c in alive.content)


COMMON = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                         HealthCheck.data_too_large])


@COMMON
@given(args=args_for("store_fact"))
def test_store_fact_bad_input(harness: Harness, args: dict[str, Any]) -> None:
    check(harness, "store_fact", args)


@COMMON
@given(args=args_for("get_fact"))
def test_get_fact_bad_input(harness: Harness, args: dict[str, Any]) -> None:
    check(harness, "get_fact", args)


@COMMON
@given(args=args_for("semantic_search"))
def test_semantic_search_bad_input(harness: Harness, args: dict[str, Any]) -> None:
    check(harness, "semantic_search", args)


@COMMON
@given(args=args_for("delete_fact"))
def test_delete_fact_bad_input(harness: Harness, args: dict[str, Any]) -> None:
    if args.get("fact_id") == "anchor":
        args = {**args, "fact_id": "not-the-anchor"}
    check(harness, "delete_fact", args)


@COMMON
@given(args=st.dictionaries(st.text(max_size=6), any_json, max_size=2))
def test_kb_stats_bad_input(harness: Harness, args: dict[str, Any]) -> None:
    check(harness, "kb_stats", args)
