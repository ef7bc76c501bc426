"""The OAuth resource server's token checks with real signed tokens (RS256 and ES256 keys made here), keys from a
JWKS file and from a loopback HTTP server, and a key rotation. No Redis: the HTTP side is in the server tests."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest

from kb_mcp.config import Settings
from kb_mcp.errors import StartupError
from kb_mcp.server import oauth
from kb_mcp.server.oauth import JwtVerifier
from tests.support.issuer import ISSUER, Issuer, ec_key, jwks_server, rsa_key
from tests.support.redis import free_port

pytestmark = pytest.mark.anyio
AUDIENCE = "http://127.0.0.1:8765/mcp"


def settings_for(jwks: str, **more: Any) -> Settings:
    return Settings(oauth_issuer=ISSUER, oauth_jwks=jwks, **more)


def unsigned(token: str, **header: Any) -> str:
    """The token's claims under another header, with its signature dropped (what `alg: none` looks like)."""
    _, body, _ = token.split(".")
    head = base64.urlsafe_b64encode(json.dumps({"typ": "JWT", **header}).encode()).rstrip(b"=").decode()
    return f"{head}.{body}."


async def test_valid_rs256_and_es256_tokens_become_the_tenant_they_name(tmp_path: Path) -> None:
    issuer = Issuer(AUDIENCE)
    verifier = JwtVerifier(settings_for(str(issuer.write_jwks(tmp_path / "jwks.json"))), AUDIENCE)
    for key in issuer.keys:
        found = await verifier.verify_token(issuer.token(key=key, kb_namespace="team-a"))
        assert found is not None, key.alg
        assert found.scopes == ["kb:read", "kb:write"] and found.claims == {"kb_namespace": "team-a", "iss": ISSUER}
        assert found.client_id == "test-client" and found.subject == "user-1" and found.resource == AUDIENCE
        assert found.token == "<redacted>"
    default = await verifier.verify_token(issuer.token(scope="kb:read"))
    assert default and default.claims and default.claims["kb_namespace"] == "kb" and default.scopes == ["kb:read"]
    listed = await verifier.verify_token(issuer.token(scope=None, scp=["kb:read"]))
    assert listed and listed.scopes == ["kb:read"]


async def test_every_kind_of_bad_token_is_refused(tmp_path: Path) -> None:
    issuer = Issuer(AUDIENCE)
    verifier = JwtVerifier(settings_for(str(issuer.write_jwks(tmp_path / "jwks.json"))), AUDIENCE)
    good = issuer.token()
    stranger = Issuer(AUDIENCE, keys=[rsa_key(kid=issuer.keys[0].kid)])  # same kid, another key
    head, body, _ = good.split(".")
    bad = {
        "a signature by another key": stranger.token(),
        "a signature of other claims": f"{head}.{issuer.token(kb_namespace='other').split('.')[1]}."
                                       f"{good.split('.')[2]}",
        "alg none": unsigned(good, alg="none", kid=issuer.keys[0].kid),
        "HS256 with the public key as secret": jwt.encode(
            {"iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 60}, "secret-" * 8, algorithm="HS256",
            headers={"kid": issuer.keys[0].kid}),
        "an RS256 header on the EC key": unsigned(good, alg="RS256", kid=issuer.keys[1].kid) + body[:10],
        "the wrong issuer": issuer.token(iss="https://evil.test"),
        "the wrong audience": issuer.token(aud="https://other.test/mcp"),
        "no audience": issuer.token(aud=None),
        "expired": issuer.token(ttl_s=-120),
        "no expiry": issuer.token(exp=None),
        "not yet valid": issuer.token(nbf=int(time.time()) + 600),
        "an unknown kid": issuer.token(key=rsa_key(kid="never-published")),
        "a namespace that is not one": issuer.token(kb_namespace="../etc"),
        "not a JWT": "opaque-token-0123456789abcdef",
    }
    for why, token in bad.items():
        assert await verifier.verify_token(token) is None, why
    assert await verifier.verify_token(issuer.token(ttl_s=-10)) is not None  # within the 30 s leeway


async def test_keys_over_http_are_cached_and_a_rotation_is_fetched_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(oauth, "REFETCH_COOLDOWN_S", 0.0)
    issuer = Issuer(AUDIENCE, keys=[rsa_key()])
    async with jwks_server(issuer) as (url, fetched):
        verifier = JwtVerifier(settings_for(url), AUDIENCE)
        for _ in range(3):
            assert await verifier.verify_token(issuer.token()) is not None
        assert len(fetched) == 1  # cached after the first token
        old = issuer.keys[0]
        issuer.keys = [ec_key()]  # the issuer rotates to a new key
        assert await verifier.verify_token(issuer.token()) is not None
        assert len(fetched) == 2  # the unknown kid fetched the set once
        assert await verifier.verify_token(issuer.token(key=old)) is None  # the retired key: one refetch, refused
        assert len(fetched) == 3
        assert await verifier.verify_token(issuer.token()) is not None and len(fetched) == 3


async def test_a_flood_of_unknown_kids_fetches_the_keys_at_most_once_a_second() -> None:
    issuer = Issuer(AUDIENCE, keys=[rsa_key()])
    async with jwks_server(issuer) as (url, fetched):
        verifier = JwtVerifier(settings_for(url), AUDIENCE)
        assert await verifier.verify_token(issuer.token()) is not None
        tokens = [issuer.token(key=rsa_key(kid=f"made-up-{i}")) for i in range(20)]
        assert await asyncio.gather(*(verifier.verify_token(t) for t in tokens)) == [None] * 20
        assert len(fetched) <= 2


async def test_a_dead_or_silent_jwks_url_refuses_tokens_within_the_file_deadline() -> None:
    issuer = Issuer(AUDIENCE)
    dead = free_port()  # nothing listens there: refused at once
    verifier = JwtVerifier(settings_for(f"http://127.0.0.1:{dead}/jwks.json", timeout_file=1.0), AUDIENCE)
    assert await verifier.verify_token(issuer.token()) is None
    # A server that accepts the connection and never answers: only the file deadline (1 s) ends the wait.
    silent = await asyncio.start_server(lambda reader, writer: None, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    try:
        verifier = JwtVerifier(settings_for(f"http://127.0.0.1:{port}/jwks.json", timeout_file=1.0), AUDIENCE)
        started = time.monotonic()
        assert await verifier.verify_token(issuer.token()) is None
        assert 0.9 <= time.monotonic() - started < 5.0  # bounded by the deadline, not by the server
    finally:
        silent.close()


def test_configuration_mistakes_stop_the_start(tmp_path: Path) -> None:
    with pytest.raises(StartupError, match="no such file"):
        JwtVerifier(settings_for(str(tmp_path / "missing.json")), AUDIENCE)
    with pytest.raises(StartupError, match="must be https://"):
        JwtVerifier(settings_for("http://issuer.example.com/jwks.json"), AUDIENCE)
    with pytest.raises(StartupError, match="both KB_OAUTH_ISSUER and KB_OAUTH_JWKS"):
        JwtVerifier(Settings(oauth_issuer=ISSUER), AUDIENCE)
