"""What each `kb-mcp` command does, given the settings and its parsed arguments; each returns the exit status.
Heavy parts (the server, the store, the benchmark) are imported inside the command that needs them."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from kb_mcp import __version__
from kb_mcp.config import Settings
from kb_mcp.connection.url import is_loopback
from kb_mcp.errors import KbError, StartupError

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
TEXT_SUFFIXES = {".md", ".markdown", ".txt", ".rst", ".text"}


# ---------------------------------------------------------------- serve

def serve(settings: Settings, args: argparse.Namespace) -> int:
    from kb_mcp.server.app import build_server

    if args.transport == "stdio":
        import anyio

        mcp, holder = build_server(settings)
        if settings.metrics_port:
            from prometheus_client import start_http_server

            start_http_server(settings.metrics_port, addr="127.0.0.1", registry=holder.metrics.registry)
        anyio.run(mcp.run_stdio_async)
        return EXIT_OK
    has_auth = any(v is not None for v in (settings.auth_token, settings.auth_tokens_file, settings.oauth_issuer))
    if not is_loopback(args.host) and not has_auth and not args.allow_unauthenticated:
        print(f"kb-mcp: refusing to serve {args.host} without authentication: set KB_AUTH_TOKEN (or "
              "KB_AUTH_TOKENS_FILE, or KB_OAUTH_ISSUER + KB_OAUTH_JWKS), or pass --allow-unauthenticated if a "
              "proxy in front authenticates",
              file=sys.stderr)
        return EXIT_USAGE
    if args.stateless:
        settings = settings.model_copy(update={"http_stateless": True})
    return _serve_http(settings, args.host, args.port)


def _serve_http(settings: Settings, host: str, port: int) -> int:
    import uvicorn

    from kb_mcp.server.app import build_server
    from kb_mcp.server.http import http_app

    problem = _why_not_servable(settings)
    if problem is not None:
        print(f"kb-mcp: {problem}", file=sys.stderr)
        return EXIT_FAIL
    mcp, holder = build_server(settings, public_url=f"http://{host}:{port}")
    app = http_app(mcp, holder, settings, host)
    mode = "stateless " if settings.http_stateless else ""
    print(f"kb-mcp {__version__}: {mode}streamable HTTP on http://{host}:{port}/mcp (health: /health, metrics: "
          f"/metrics), Redis {settings.redis_target.mode} at {settings.redis_target.display}", file=sys.stderr)
    # The stock asyncio loop and h11, even when uvloop/httptools are installed: they measured no faster here, and
    # under uvloop a write to a reset Redis connection raises RuntimeError, which redis-py does not treat as a
    # connection error (found by the fault soak test).
    uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                                  lifespan="on", timeout_graceful_shutdown=5, loop="asyncio", http="h11")).run()
    return EXIT_OK


def _why_not_servable(settings: Settings) -> str | None:
    """Why the default namespace cannot be served as configured (another model's vectors, another dimension, the
    layout before hash tags), asked before the HTTP server starts: from its lifespan, uvicorn would bury the
    sentence under a traceback. None when it can be, or when Redis is not up yet (the server starts and recovers)."""
    from kb_mcp.store import Backend

    async def check() -> str | None:
        async with Backend.open(settings) as backend:
            try:
                await backend.store(settings.namespace).ensure_index()
            except StartupError as exc:
                return str(exc)
            except KbError:
                return None
        return None

    return asyncio.run(check())


# ---------------------------------------------------------------- store commands

def _with_store(settings: Settings, work: Callable[[Any], Awaitable[int]]) -> int:
    from kb_mcp.store import KnowledgeStore

    async def run() -> int:
        async with KnowledgeStore.open(settings) as store:
            return await work(store)

    return asyncio.run(run())


def ingest(settings: Settings, args: argparse.Namespace) -> int:
    from tqdm import tqdm

    files: list[Path] = []
    for path in args.paths:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
        elif path.is_file():
            files.append(path)
        else:
            print(f"kb-mcp: {path}: no such file or directory", file=sys.stderr)
            return EXIT_USAGE

    async def work(store: Any) -> int:
        chunks = 0
        failed = 0
        with tqdm(files, unit="file", file=sys.stderr, disable=not files) as bar:
            for file in bar:
                bar.set_postfix_str(file.name[-30:])
                try:
                    ids = await store.add_document(path=file.resolve(), tags=args.tags,
                                                   chunk_tokens=args.chunk_tokens)
                    chunks += len(ids)
                except KbError as exc:
                    failed += 1
                    tqdm.write(f"{file}: {exc}", file=sys.stderr)
        print(f"ingested {len(files) - failed} file(s) as {chunks} chunk(s); {failed} failed", file=sys.stderr)
        return EXIT_FAIL if failed else EXIT_OK

    return _with_store(settings, work)


def export(settings: Settings, args: argparse.Namespace) -> int:
    return _transfer(settings, args.file, export=True)


def import_file(settings: Settings, args: argparse.Namespace) -> int:
    return _transfer(settings, args.file, export=False)


def _transfer(settings: Settings, file: Path, *, export: bool) -> int:
    """`export FILE` / `import FILE`: JSONL with vectors, through the bounded store API, with a progress bar (an
    import counts each line twice: validated, then written)."""
    from tqdm import tqdm

    async def work(store: Any) -> int:
        desc = f"export {settings.namespace}" if export else f"import {file.name} (validate, then write)"
        with tqdm(desc=desc, unit=" facts" if export else " lines", file=sys.stderr) as bar:
            def progress(done: int) -> None:
                bar.update(done - bar.n)

            count = await (store.export(file, progress) if export else store.import_(file, progress))
        print(f"{'exported' if export else 'imported'} {count} fact(s) {'to' if export else 'from'} {file}",
              file=sys.stderr)
        return EXIT_OK

    return _with_store(settings, work)


def stats(settings: Settings, args: argparse.Namespace) -> int:
    async def work(store: Any) -> int:
        stats = await store.stats()
        data = stats.model_dump()
        redis = data.pop("redis")
        rows = [(k, v) for k, v in data.items()] + [(f"redis.{k}", v) for k, v in redis.items()]
        width = max(len(k) for k, _ in rows)
        for key, value in rows:
            print(f"{key:<{width}}  {value if value is not None else '-'}")
        return EXIT_OK if stats.error is None else EXIT_FAIL

    code = _with_store(settings, work)
    if args.server:
        from kb_mcp.server.metrics import summarize_remote

        token = settings.auth_token.get_secret_value() if settings.auth_token else None
        print()
        print(summarize_remote(args.server, token))
    return code


def reindex(settings: Settings, args: argparse.Namespace) -> int:
    if args.re_embed:
        return _re_embed(settings)

    async def work(store: Any) -> int:
        stats = await store.rebuild_index()
        print(f"index {stats.index} re-created: {stats.facts} fact(s), {stats.index_state}", file=sys.stderr)
        return EXIT_OK

    return _with_store(settings, work)


def _re_embed(settings: Settings) -> int:
    """Not through `_with_store`: opening the store checks the recorded model, which is what this changes."""
    from tqdm import tqdm

    from kb_mcp.store.knowledge import Backend

    async def run() -> int:
        async with Backend.open(settings) as backend:
            store = backend.store(settings.namespace)
            with tqdm(desc=f"re-embedding {settings.namespace}", unit=" facts", file=sys.stderr) as bar:

                def progress(done: int) -> None:
                    bar.update(done - bar.n)

                report = await store.re_embed(progress)
        print(f"{settings.namespace}: {report.facts} fact(s) embedded again with {report.model} ({report.dim}-d) in "
              f"{report.seconds} s; {report.skipped} changed or deleted meanwhile (left as written)", file=sys.stderr)
        return EXIT_OK

    return asyncio.run(run())


def migrate(settings: Settings, args: argparse.Namespace) -> int:
    from kb_mcp.server.auth import load_tokens
    from kb_mcp.store.knowledge import Backend

    namespaces = args.namespaces or sorted({settings.namespace} | {t.namespace for t in load_tokens(settings).values()})

    async def run() -> int:
        async with Backend.open(settings) as backend:
            for namespace in namespaces:
                report = await backend.store(namespace).migrate_layout()
                print(f"{namespace}: moved {report.facts_moved} fact(s) and {report.pointers_moved} dedup pointer(s)"
                      f" ({report.already_new} already moved), old index "
                      f"{'dropped' if report.legacy_index_dropped else 'absent'}; {report.facts_now} fact(s) indexed",
                      file=sys.stderr)
        return EXIT_OK

    return asyncio.run(run())


def doctor(settings: Settings, args: argparse.Namespace) -> int:
    from kb_mcp.cli.doctor import run_doctor

    return asyncio.run(run_doctor(settings))


def eval_sets(settings: Settings, args: argparse.Namespace) -> int:
    from kb_mcp.bench.evaluate import run_eval

    return run_eval(settings, args)


def bench(settings: Settings, args: argparse.Namespace) -> int:
    from kb_mcp.bench.runner import run_bench

    return run_bench(settings, args)
