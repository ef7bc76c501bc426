"""Bearer tokens for streamable HTTP, through the SDK's TokenVerifier: each token maps to a tenant.

`KB_AUTH_TOKEN` is one token with full access to `KB_NAMESPACE`; `KB_AUTH_TOKENS_FILE` adds tenants:
`{"<token>": {"namespace": "team-a", "read_only": false}, ...}`. Tokens are compared in constant time against every
known token (no early exit), and never logged.
"""

from __future__ import annotations

import hmac
import json
import re
from dataclasses import dataclass
from pathlib import Path

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken

from kb_mcp.config import NAMESPACE_PATTERN, Settings
from kb_mcp.errors import StartupError

NAMESPACE_CLAIM = "kb_namespace"
READ_SCOPE, WRITE_SCOPE = "kb:read", "kb:write"


@dataclass(frozen=True)
class Tenant:
    """Whose call this is: the namespace it may see and whether it may write."""

    namespace: str
    read_only: bool
    name: str = "default"


class StaticTokenVerifier:
    """Verifies bearer tokens against a fixed table (SDK `TokenVerifier` protocol)."""

    def __init__(self, tokens: dict[str, Tenant]) -> None:
        self._tokens = [(token.encode("utf-8"), tenant) for token, tenant in tokens.items()]

    async def verify_token(self, token: str) -> AccessToken | None:
        offered = token.encode("utf-8", "surrogatepass")
        found: Tenant | None = None
        for known, tenant in self._tokens:  # every comparison runs: timing does not reveal which token matched
            if hmac.compare_digest(known, offered):
                found = tenant
        if found is None:
            return None
        scopes = [READ_SCOPE] if found.read_only else [READ_SCOPE, WRITE_SCOPE]
        return AccessToken(token="<redacted>", client_id=found.name, scopes=scopes,
                           claims={NAMESPACE_CLAIM: found.namespace})


def load_tokens(settings: Settings) -> dict[str, Tenant]:
    """The token table from KB_AUTH_TOKEN and KB_AUTH_TOKENS_FILE (empty: no authentication)."""
    tokens: dict[str, Tenant] = {}
    if settings.auth_token is not None:
        tokens[settings.auth_token.get_secret_value()] = Tenant(settings.namespace, settings.read_only)
    if settings.auth_tokens_file is not None:
        tokens.update(_read_tokens_file(settings.auth_tokens_file))
    return tokens


def _read_tokens_file(path: Path) -> dict[str, Tenant]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise StartupError(f"KB_AUTH_TOKENS_FILE {path}: cannot read JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise StartupError(f"KB_AUTH_TOKENS_FILE {path}: must be a JSON object of token -> {{namespace, read_only}}")
    out: dict[str, Tenant] = {}
    for i, (token, spec) in enumerate(data.items()):
        where = f"KB_AUTH_TOKENS_FILE {path}: entry {i + 1}"
        if not isinstance(token, str) or len(token) < 16:
            raise StartupError(f"{where}: tokens must be strings of at least 16 characters")
        if not isinstance(spec, dict) or not isinstance(spec.get("namespace"), str):
            raise StartupError(f"{where}: value must be {{\"namespace\": str, \"read_only\": bool}}")
        if not re.match(NAMESPACE_PATTERN, spec["namespace"]):
            raise StartupError(f"{where}: namespace {spec['namespace']!r} must match {NAMESPACE_PATTERN}")
        read_only = spec.get("read_only", False)
        if not isinstance(read_only, bool):
            raise StartupError(f"{where}: read_only must be true or false")
        out[token] = Tenant(spec["namespace"], read_only, name=str(spec.get("name", spec["namespace"])))
    return out


def may_write(token: AccessToken | None) -> bool:
    """Whether the request's token (None: stdio, in-process, no auth) allows the write tools: it holds kb:write."""
    return token is None or WRITE_SCOPE in token.scopes


def current_tenant(default: Tenant) -> Tenant:
    """The tenant of the HTTP request being served, or `default` (stdio, in-process, no auth)."""
    token = get_access_token()
    if token is None or not token.claims or NAMESPACE_CLAIM not in token.claims:
        return default
    return Tenant(str(token.claims[NAMESPACE_CLAIM]), not may_write(token), name=token.client_id)
