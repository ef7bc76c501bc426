"""A test authorization server's signing side: real RSA and EC keys made here, their JWKS, and signed JWT access
tokens (what an OAuth 2.1 issuer hands a client), for the resource-server tests."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import uvicorn
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.support.redis import free_port

ISSUER = "https://issuer.test"


@dataclass
class SigningKey:
    kid: str
    alg: str
    private: Any

    def public_jwk(self) -> dict[str, Any]:
        make = RSAAlgorithm if self.alg.startswith(("RS", "PS")) else ECAlgorithm
        jwk: dict[str, Any] = json.loads(make.to_jwk(self.private.public_key()))
        return {**jwk, "kid": self.kid, "alg": self.alg, "use": "sig"}


def rsa_key(kid: str | None = None) -> SigningKey:
    return SigningKey(kid or "rsa-" + uuid.uuid4().hex[:8], "RS256",
                      rsa.generate_private_key(public_exponent=65537, key_size=2048))


def ec_key(kid: str | None = None) -> SigningKey:
    return SigningKey(kid or "ec-" + uuid.uuid4().hex[:8], "ES256", ec.generate_private_key(ec.SECP256R1()))


@dataclass
class Issuer:
    """Keys published in a JWKS, tokens signed with any of them."""

    audience: str
    keys: list[SigningKey] = field(default_factory=lambda: [rsa_key(), ec_key()])

    def jwks(self) -> dict[str, Any]:
        return {"keys": [k.public_jwk() for k in self.keys]}

    def write_jwks(self, path: Path) -> Path:
        path.write_text(json.dumps(self.jwks()), encoding="utf-8")
        return path

    def token(self, *, key: SigningKey | None = None, scope: str = "kb:read kb:write", ttl_s: int = 300,
              headers: dict[str, Any] | None = None, **claims: Any) -> str:
        signer = key or self.keys[0]
        now = int(time.time())
        body = {"iss": ISSUER, "aud": self.audience, "sub": "user-1", "client_id": "test-client", "iat": now,
                "nbf": now, "exp": now + ttl_s, "scope": scope, **claims}
        return jwt.encode({k: v for k, v in body.items() if v is not None}, signer.private, algorithm=signer.alg,
                          headers={"kid": signer.kid, **(headers or {})})


@asynccontextmanager
async def jwks_server(issuer: Issuer) -> AsyncIterator[tuple[str, list[float]]]:
    """The issuer's JWKS over HTTP on loopback, and the times it was fetched."""
    fetched: list[float] = []

    async def jwks(_: Request) -> JSONResponse:
        fetched.append(time.monotonic())
        return JSONResponse(issuer.jwks())

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(Starlette(routes=[Route("/jwks.json", jwks)]), host="127.0.0.1",
                                           port=port, log_level="error", lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}/jwks.json", fetched
    finally:
        server.should_exit = True
        await task
