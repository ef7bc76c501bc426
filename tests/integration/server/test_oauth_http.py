"""kb-mcp as an OAuth 2.1 resource server over streamable HTTP (a real `kb-mcp serve` process, real signed tokens,
the JWKS from a loopback HTTP server and from a file, a real mcp.Client): Protected Resource Metadata, 401 / 403
answers, scopes, tenancy by claim (tools and kb:// resources), a key rotation, static tokens beside JWTs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from redis.exceptions import ResponseError

from kb_mcp.config import Settings
from tests.support.issuer import ISSUER, Issuer, ec_key, jwks_server
from tests.support.mcp import KB_MCP, TOOLS, bearer, http_server, kb_env, text

pytestmark = pytest.mark.anyio
PUBLIC = "https://kb.test"
RESOURCE = PUBLIC + "/mcp"
METADATA = PUBLIC + "/.well-known/oauth-protected-resource/mcp"
STATIC = "static-token-for-the-oauth-tests-0123"
READ_TOOLS = {"get_fact", "semantic_search", "kb_stats"}
JSONRPC = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def oauth_env(jwks: str, **more: str) -> dict[str, str]:
    return {"KB_OAUTH_ISSUER": ISSUER, "KB_OAUTH_JWKS": jwks, "KB_PUBLIC_URL": PUBLIC, **more}


async def drop(raw_redis: aioredis.Redis, *namespaces: str) -> None:
    for ns in namespaces:
        with contextlib.suppress(ResponseError):  # a namespace the test never wrote to has no index
            await raw_redis.execute_command("FT.DROPINDEX", f"{{{ns}}}:idx", "DD")
        keys = [k async for k in raw_redis.scan_iter(match=f"{{{ns}}}:*")]
        if keys:
            await raw_redis.delete(*keys)


async def post(base: str, token: str | None) -> httpx.Response:
    headers = {**JSONRPC, **({"Authorization": f"Bearer {token}"} if token else {})}
    async with httpx.AsyncClient() as plain:
        return await plain.post(base + "/mcp", headers=headers, json={"jsonrpc": "2.0", "id": 1,
                                                                        "method": "tools/list"})


async def test_resource_server_metadata_401_403_scopes_tenancy_and_rotation(settings: Settings, namespace: str,
                                                                           raw_redis: aioredis.Redis) -> None:
    issuer = Issuer(RESOURCE)
    team_a, team_b = f"{namespace}-a", f"{namespace}-b"
    async with jwks_server(issuer) as (url, fetched):
        with http_server(settings, **oauth_env(url, KB_AUTH_TOKEN=STATIC)) as base:
            async with httpx.AsyncClient() as plain:
                meta = await plain.get(base + "/.well-known/oauth-protected-resource/mcp")
                assert meta.status_code == 200, meta.text
                assert meta.json()["resource"] == RESOURCE and meta.json()["authorization_servers"] == [ISSUER]
                assert meta.json()["scopes_supported"] == ["kb:read", "kb:write"]
                assert (await plain.get(base + "/metrics")).status_code == 401

            anonymous = await post(base, None)
            assert anonymous.status_code == 401
            assert f'resource_metadata="{METADATA}"' in anonymous.headers["www-authenticate"]
            for bad in (issuer.token(ttl_s=-600), issuer.token(aud="https://other.test/mcp"),
                        issuer.token(iss="https://evil.test"), "not-a-token-at-all-0123456789"):
                refused = await post(base, bad)
                assert refused.status_code == 401, refused.text
                assert "resource_metadata=" in refused.headers["www-authenticate"]
            no_read = await post(base, issuer.token(scope="profile"))
            assert no_read.status_code == 403 and 'error="insufficient_scope"' in no_read.headers["www-authenticate"]

            writer_a = issuer.token(kb_namespace=team_a)
            reader_a = issuer.token(kb_namespace=team_a, scope="kb:read")
            writer_b = issuer.token(key=issuer.keys[1], kb_namespace=team_b)  # ES256
            async with Client(streamable_http_client(base + "/mcp", http_client=bearer(writer_a))) as client:
                listed = await client.list_tools()
                assert {t.name for t in listed.tools} == TOOLS
                assert listed.cache_scope == "private"  # what a caller lists depends on its token
                stored = await client.call_tool("store_fact", {"content": "Team A ships on Fridays.",
                                                               "fact_id": "a.ship"})
                assert not stored.is_error, text(stored)
            async with Client(streamable_http_client(base + "/mcp", http_client=bearer(reader_a))) as client:
                assert {t.name for t in (await client.list_tools()).tools} == READ_TOOLS
                write = await client.call_tool("store_fact", {"content": "Readers cannot write."})
                assert write.is_error and "needs the kb:write scope" in text(write), text(write)
                got = await client.call_tool("get_fact", {"fact_id": "a.ship"})
                assert not got.is_error and got.structured_content
                assert got.structured_content["facts"][0]["content"] == "Team A ships on Fridays."
            async with Client(streamable_http_client(base + "/mcp", http_client=bearer(writer_b))) as client:
                missing = await client.call_tool("get_fact", {"fact_id": "a.ship"})
                assert missing.is_error and "fact not found" in text(missing)
                found = await client.call_tool("semantic_search", {"query": "when does the team ship?"})
                assert found.structured_content == {"results": []}
                with pytest.raises(MCPError):
                    await client.read_resource("kb://facts/a.ship")
                stats = json.loads((await client.read_resource("kb://stats")).contents[0].text)  # type: ignore[union-attr]
                assert stats["namespace"] == team_b

            issuer.keys = [ec_key(), *issuer.keys]  # the issuer rotates: tokens now come from a new key
            await asyncio.sleep(1.1)  # unknown kids fetch the keys at most once a second
            before = len(fetched)
            async with Client(streamable_http_client(base + "/mcp", http_client=bearer(
                    issuer.token(kb_namespace=team_a, scope="kb:read")))) as client:
                assert {t.name for t in (await client.list_tools()).tools} == READ_TOOLS
            assert len(fetched) == before + 1

            async with Client(streamable_http_client(base + "/mcp", http_client=bearer(STATIC))) as client:
                assert {t.name for t in (await client.list_tools()).tools} == TOOLS  # static tokens still work
            async with httpx.AsyncClient() as plain:
                scraped = await plain.get(base + "/metrics", headers={"Authorization": f"Bearer {writer_a}"})
                assert scraped.status_code == 200
                for reason in ("expired", "audience", "issuer", "malformed"):  # counted, by reason
                    assert f'kb_auth_tokens_refused_total{{reason="{reason}"}} 1.0' in scraped.text, reason
    await drop(raw_redis, team_a, team_b)


async def test_jwks_from_a_file_and_the_default_audience(settings: Settings, tmp_path: Path,
                                                         raw_redis: aioredis.Redis) -> None:
    issuer = Issuer(RESOURCE)
    jwks = issuer.write_jwks(tmp_path / "jwks.json")
    with http_server(settings, **oauth_env(str(jwks))) as base:
        async with Client(streamable_http_client(base + "/mcp", http_client=bearer(issuer.token()))) as client:
            assert {t.name for t in (await client.list_tools()).tools} == TOOLS
        assert (await post(base, issuer.token(aud=f"{base}/mcp"))).status_code == 401  # not the public URL
        new = ec_key()
        issuer.keys = [new]
        issuer.write_jwks(jwks)  # a rotation by replacing the file
        await asyncio.sleep(1.1)  # the refetch cooldown
        async with Client(streamable_http_client(base + "/mcp", http_client=bearer(issuer.token()))) as client:
            stored = await client.call_tool("store_fact", {"content": "Stored with a rotated key."})
            assert not stored.is_error, text(stored)
    await drop(raw_redis, settings.namespace)


def test_serve_refuses_a_half_configured_oauth(settings: Settings) -> None:
    done = subprocess.run([KB_MCP, "serve", "--transport", "http", "--port", "1"], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **kb_env(settings, KB_OAUTH_ISSUER=ISSUER)})
    assert done.returncode != 0 and "OAuth needs both KB_OAUTH_ISSUER and KB_OAUTH_JWKS" in done.stderr
