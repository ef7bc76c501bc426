"""OAuth 2.1 resource server for streamable HTTP: JWT access tokens from KB_OAUTH_ISSUER, checked against its JWKS
with PyJWT (already the MCP SDK's own dependency, with `cryptography` for RSA / EC / EdDSA: nothing new to install).

A token is accepted only when its signature verifies with a key of the issuer's JWKS whose type fits the token's
`alg` (an asymmetric algorithm; `none` and shared-secret HMAC are never accepted), and its `iss`, `aud` (RFC 8707:
this server's resource URL unless KB_OAUTH_AUDIENCE says otherwise), `exp` and `nbf` hold, with a small leeway for
clock skew. The keys are cached and fetched again (once, bounded by the file deadline) when a token names a `kid`
they lack, so a key rotation needs no restart. Scopes `kb:read` / `kb:write` and the namespace claim become the
same tenant a static token maps to (`auth.current_tenant`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import jwt
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from pydantic import AnyHttpUrl

from kb_mcp.config import NAMESPACE_PATTERN, Settings
from kb_mcp.connection.url import is_loopback
from kb_mcp.deadlines import bounded
from kb_mcp.errors import KbError, StartupError
from kb_mcp.server.auth import NAMESPACE_CLAIM, READ_SCOPE, StaticTokenVerifier, Tenant

log = logging.getLogger("kb_mcp.server.oauth")
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
LEEWAY_S = 30  # clock skew allowed on exp / nbf / iat
REFETCH_COOLDOWN_S = 1.0  # unknown kids fetch the JWKS at most once a second (a flood of made-up kids cannot)
MAX_JWKS_BYTES = 1_048_576


class JwksSource:
    """The issuer's signing keys by kid, from a file or a URL, fetched again on an unknown kid."""

    def __init__(self, location: str, settings: Settings) -> None:
        self._location = location
        self._settings = settings
        self._keys: dict[str | None, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()
        if location.startswith(("http://", "https://")):
            host = urlparse(location).hostname or ""
            if location.startswith("http://") and not is_loopback(host):
                raise StartupError(f"KB_OAUTH_JWKS {location}: must be https:// (http:// only on loopback)")
        elif not Path(location).is_file():
            raise StartupError(f"KB_OAUTH_JWKS {location}: no such file (give a JWKS file or an https:// URL)")

    async def key(self, kid: str | None) -> jwt.PyJWK | None:
        """The key for `kid` (None: the only key of a one-key set), fetching the set again once if unknown."""
        found = self._lookup(kid)
        if found is not None:
            return found
        async with self._lock:
            if time.monotonic() - self._fetched_at >= REFETCH_COOLDOWN_S:
                try:
                    self._keys = await self._fetch()
                except (KbError, OSError, ValueError, httpx.HTTPError, jwt.PyJWTError) as exc:
                    log.warning("cannot read the JWKS at %s: %s", self._location, exc)
                finally:
                    self._fetched_at = time.monotonic()
        return self._lookup(kid)

    def _lookup(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        return self._keys.get(kid)

    async def _fetch(self) -> dict[str | None, jwt.PyJWK]:
        policy = self._settings.timeouts
        if self._location.startswith(("http://", "https://")):
            async with httpx.AsyncClient(timeout=policy.file_s, follow_redirects=False) as client:
                response = await bounded("file", client.get(self._location), "fetch JWKS", policy=policy)
            response.raise_for_status()
            raw = response.content
        else:
            raw = await bounded("file", asyncio.to_thread(Path(self._location).read_bytes), "read JWKS",
                                policy=policy)
        if len(raw) > MAX_JWKS_BYTES:
            raise ValueError(f"the JWKS is larger than {MAX_JWKS_BYTES} bytes")
        keys = jwt.PyJWKSet.from_dict(json.loads(raw)).keys
        return {key.key_id: key for key in keys if getattr(key, "public_key_use", None) in (None, "sig")}


class JwtVerifier:
    """Verifies JWT access tokens (SDK `TokenVerifier` protocol); None for any token it does not accept."""

    def __init__(self, settings: Settings, resource_url: str, refused: Callable[[str], None] = lambda why: None
                 ) -> None:
        if not settings.oauth_issuer or not settings.oauth_jwks:
            raise StartupError("OAuth needs both KB_OAUTH_ISSUER and KB_OAUTH_JWKS")
        self._issuer = settings.oauth_issuer
        self.audience = settings.oauth_audience or resource_url
        self._claim = settings.oauth_namespace_claim
        self._namespace = settings.namespace
        self._keys = JwksSource(settings.oauth_jwks, settings)
        self._refused = refused

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return self._refuse("malformed", "not a JWT")
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in ALGORITHMS:
            return self._refuse("algorithm", f"algorithm {alg!r} is not accepted")
        key = await self._keys.key(kid if isinstance(kid, str) else None)
        if key is None:
            return self._refuse("unknown_key", f"no key {kid!r} in the issuer's JWKS")
        if key.algorithm_name != alg:  # an RSA key never verifies an EC token, nor RS256 a PS256 one
            return self._refuse("algorithm", f"key {kid!r} is for {key.algorithm_name}, the token says {alg}")
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key=key.key, algorithms=[alg], audience=self.audience, issuer=self._issuer, leeway=LEEWAY_S,
                options={"require": ["exp", "iss", "aud"]})
        except jwt.PyJWTError as exc:
            return self._refuse(_REASONS.get(type(exc), "invalid"), str(exc))
        namespace = claims.get(self._claim, self._namespace)
        if not isinstance(namespace, str) or not re.match(NAMESPACE_PATTERN, namespace):
            return self._refuse("namespace", f"claim {self._claim} is not a namespace")
        return AccessToken(token="<redacted>", client_id=_client_of(claims), scopes=_scopes_of(claims),
                           expires_at=int(claims["exp"]), resource=self.audience,
                           subject=str(claims["sub"]) if "sub" in claims else None,
                           claims={NAMESPACE_CLAIM: namespace, "iss": self._issuer})


    def _refuse(self, reason: str, detail: str) -> AccessToken | None:
        """No token: logged (never the token itself) and counted by `reason`."""
        log.info("token refused: %s", detail)
        self._refused(reason)
        return None


_REASONS: dict[type[Exception], str] = {
    jwt.InvalidSignatureError: "signature", jwt.ExpiredSignatureError: "expired",
    jwt.ImmatureSignatureError: "not_yet_valid", jwt.InvalidIssuerError: "issuer",
    jwt.InvalidAudienceError: "audience", jwt.MissingRequiredClaimError: "missing_claim",
    jwt.DecodeError: "malformed",
}


class ChainVerifier:
    """Static tokens first (the constant-time table), then JWTs: both kinds of token work side by side."""

    def __init__(self, *verifiers: Any) -> None:
        self._verifiers = verifiers

    async def verify_token(self, token: str) -> AccessToken | None:
        for verifier in self._verifiers:
            found: AccessToken | None = await verifier.verify_token(token)
            if found is not None:
                return found
        return None


def _scopes_of(claims: dict[str, Any]) -> list[str]:
    """`scope` (RFC 9068: space-separated) or `scp` (a list, as some issuers send it)."""
    raw = claims.get("scope", claims.get("scp", ""))
    return raw.split() if isinstance(raw, str) else [str(s) for s in raw] if isinstance(raw, list) else []


def _client_of(claims: dict[str, Any]) -> str:
    return str(claims.get("client_id") or claims.get("azp") or claims.get("sub") or "oauth-client")


def resource_url(settings: Settings, public_url: str) -> str:
    """This server's MCP endpoint as clients reach it (the OAuth resource, RFC 9728 / RFC 8707)."""
    return (settings.public_url or public_url).rstrip("/") + "/mcp"


def auth_for(settings: Settings, tokens: dict[str, Tenant], public_url: str,
             refused: Callable[[str], None] = lambda why: None) -> tuple[Any, AuthSettings] | None:
    """The token verifier and the SDK's auth settings for `settings` (None: no authentication). With OAuth the
    server is a resource server: the SDK publishes its Protected Resource Metadata and answers 401 with
    `WWW-Authenticate: Bearer resource_metadata=...`, and 403 `insufficient_scope` to a token without kb:read."""
    if settings.oauth_issuer is None and settings.oauth_jwks is None:
        if not tokens:
            return None
        return StaticTokenVerifier(tokens), AuthSettings(issuer_url=AnyHttpUrl(public_url), resource_server_url=None)
    resource = resource_url(settings, public_url)
    jwts = JwtVerifier(settings, resource, refused)
    verifier = ChainVerifier(StaticTokenVerifier(tokens), jwts) if tokens else jwts
    # From strings: AuthSettings keeps a path-less issuer as written (RFC 8414 compares issuers exactly; a parsed
    # AnyHttpUrl would gain a trailing slash).
    return verifier, AuthSettings.model_validate({
        "issuer_url": settings.oauth_issuer, "resource_server_url": resource, "required_scopes": [READ_SCOPE],
        "validate_token_resource": False})  # the audience is checked in JwtVerifier
