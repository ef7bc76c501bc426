"""`kb-mcp`: serve (stdio | http), ingest, export, import, stats, doctor, reindex, migrate, eval, bench.

`kb-mcp` with no arguments serves MCP on stdio, which is what client configs launch. Everything this command prints
for a person goes to stderr, except the output a subcommand was asked for (stats/doctor tables, JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from kb_mcp import __version__, logs
from kb_mcp.config import Settings, describe_validation_error
from kb_mcp.errors import KbError, StartupError

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
TEXT_SUFFIXES = {".md", ".markdown", ".txt", ".rst", ".text"}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kb-mcp", description="MCP server giving LLM agents a long-term knowledge base on Redis Stack. "
        "Configuration comes from KB_* environment variables (see README).")
    parser.add_argument("--version", action="version", version=f"kb-mcp {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser("serve", help="serve MCP (default: stdio)", description=(
        "Serve the MCP tools. stdio is what Claude Desktop / Cursor launch; http serves streamable HTTP at /mcp "
        "with GET /health and GET /metrics."))
    serve.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    serve.add_argument("--host", default="127.0.0.1", help="HTTP bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8765, help="HTTP port (default 8765)")
    serve.add_argument("--stateless", action="store_true",
                       help="HTTP without sessions (also KB_HTTP_STATELESS=true): any of several replicas behind a "
                            "load balancer can answer any request, no sticky sessions needed")
    serve.add_argument("--allow-unauthenticated", action="store_true",
                       help="allow binding a non-loopback address without KB_AUTH_TOKEN / KB_AUTH_TOKENS_FILE")

    ingest = sub.add_parser("ingest", help="add text/markdown files or directories as chunked documents",
                            description="Split each file with LlamaIndex's SentenceSplitter and store the chunks as "
                                        "facts sharing a doc_id (re-ingesting a file replaces its chunks).")
    ingest.add_argument("paths", nargs="+", type=Path)
    ingest.add_argument("--tag", action="append", default=[], dest="tags", help="tag every chunk (repeatable)")
    ingest.add_argument("--chunk-tokens", type=int, default=200)

    export = sub.add_parser("export", help="write every fact (with vectors) to a JSONL file")
    export.add_argument("file", type=Path)
    imp = sub.add_parser("import", help="load a JSONL export (records without vectors are embedded)")
    imp.add_argument("file", type=Path)
    stats = sub.add_parser("stats", help="fact count, index state, memory, breaker and pool; --server adds a "
                                         "running server's tool-call metrics")
    stats.add_argument("--server", metavar="URL", help="a running `serve --transport http` (e.g. "
                                                       "http://127.0.0.1:8765): read its /metrics too")
    sub.add_parser("doctor", help="check Redis, the search module, the index, the model and the timeouts")
    reindex = sub.add_parser("reindex", help="drop and re-create the search index from the stored facts (no data "
                                             "loss); --re-embed: embed every fact again with the configured model")
    reindex.add_argument("--re-embed", action="store_true",
                         help="give every fact of KB_NAMESPACE a vector from the configured embedding model and "
                              "record that model (after changing KB_EMBEDDING_PROVIDER/KB_EMBEDDING_MODEL; stop the "
                              "servers still using the old model first)")
    migrate = sub.add_parser("migrate", help="move namespaces from the key layout before hash tags (in place)",
                             description="Rename every key of a namespace stored as <ns>:fact:<id> (the layout "
                                         "before hash tags) to {<ns>}:fact:<id>, create the new index and drop the "
                                         "old one. Keeps "
                                         "vectors and TTLs; idempotent and resumable.")
    migrate.add_argument("--namespace", action="append", dest="namespaces", metavar="NS",
                         help="namespace to migrate (repeatable; default KB_NAMESPACE and every namespace of "
                              "KB_AUTH_TOKENS_FILE)")

    _bench_arguments(sub.add_parser("bench", help="reproducible benchmark (see README)"))
    _eval_arguments(sub.add_parser("eval", help="retrieval quality per search mode (BEIR nDCG@10; recall@1/@5)"))
    return parser


def _eval_arguments(parser: argparse.ArgumentParser) -> None:
    """`kb-mcp eval` options (here, so that parsing a command never imports the evaluation)."""
    parser.description = ("Measure retrieval quality and p50 latency of semantic_search per mode: on a BEIR benchmark "
                          "(--beir DIR: nDCG@10, recall@10/@50, MRR@10), on the built-in sets (recall@1/@5, MRR@10; "
                          "loaded into scratch namespaces eval-bench / eval-hard, dropped after), or on your own "
                          "query -> fact_id pairs against KB_NAMESPACE (--pairs).")
    parser.add_argument("--mode", choices=["all", "hybrid", "vector", "keyword"], default="all")
    parser.add_argument("--set", choices=["all", "bench", "hard"], default="all", help="built-in set(s)")
    parser.add_argument("--pairs", metavar="FILE.jsonl", help='your own lines {"query": ..., "fact_id": ...}')
    parser.add_argument("--beir", metavar="DIR", help="a BEIR set: corpus.jsonl, queries.jsonl, qrels/<split>.tsv "
                                                      "(loaded into the scratch namespace eval-beir)")
    parser.add_argument("--split", default="test", help="the BEIR qrels split to ask (default test)")
    parser.add_argument("--docs", type=int, help="BEIR: only the judged documents of the queries asked, plus the "
                                                 "corpus's first ones up to this many (a quick slice)")
    parser.add_argument("--reuse", action="store_true", help="BEIR: ask an eval-beir namespace kept by an earlier "
                                                             "--keep run without loading it again")
    parser.add_argument("--facts", type=int, default=2000, help="facts per built-in set (default 2000)")
    parser.add_argument("--queries", type=int, help="queries per set (default: 400 per built-in set, every judged "
                                                     "query of a BEIR split)")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--keep", action="store_true", help="keep the scratch namespaces")
    parser.add_argument("--json", action="store_true", help="JSON instead of a Markdown table")


def _bench_arguments(parser: argparse.ArgumentParser) -> None:
    """`kb-mcp bench` options, defined here so that parsing a command never imports the benchmark."""
    parser.description = ("Benchmark kb-mcp through a real MCP client. Uses KB_REDIS_URL when set, else starts a "
                          "private Redis Stack with scripts/redis-stack.sh. Results go to --out.")
    parser.add_argument("--facts", default="10000,100000", help="corpus sizes, comma-separated (default 10000,100000)")
    parser.add_argument("--clients", default="1,10,50,100", help="concurrency levels for semantic_search")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each concurrency level")
    parser.add_argument("--queries", type=int, default=300, help="sequential calls for single-client latency")
    parser.add_argument("--out", type=Path, default=Path("bench-results"), help="results folder")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="a short smoke run: 2000 facts, short levels (~2 min)")
    parser.add_argument("--keep", action="store_true", help="keep the bench namespaces in Redis afterwards")
    parser.add_argument("--beir", metavar="DIR", help="a BEIR set's documents as the corpus (instead of --facts), "
                                                      "asked its test queries")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"kb-mcp: {describe_validation_error(exc)}", file=sys.stderr)
        return EXIT_USAGE
    logs.configure(settings.log_level, settings.log_format)
    command = args.command or "serve"
    if command == "serve" and not hasattr(args, "transport"):
        args = _parser().parse_args(["serve"])
    try:
        handler = _COMMANDS[command]
        return handler(settings, args)
    except KbError as exc:
        print(f"kb-mcp: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except BaseExceptionGroup as group:  # the stdio server's task groups wrap what its start raised
        found, rest = group.split(KbError)
        if found is None or rest is not None:
            raise
        print(f"kb-mcp: {_first_leaf(found)}", file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        return 130


def _first_leaf(group: BaseExceptionGroup[KbError]) -> BaseException:
    leaf: BaseException = group
    while isinstance(leaf, BaseExceptionGroup):
        leaf = leaf.exceptions[0]
    return leaf


# ---------------------------------------------------------------- serve

def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from kb_mcp.server import build_server

    if args.transport == "stdio":
        import anyio

        mcp, holder = build_server(settings)
        if settings.metrics_port:
            from prometheus_client import start_http_server

            start_http_server(settings.metrics_port, addr="127.0.0.1", registry=holder.metrics.registry)
        anyio.run(mcp.run_stdio_async)
        return EXIT_OK
    has_auth = settings.auth_token is not None or settings.auth_tokens_file is not None
    if not _is_loopback(args.host) and not has_auth and not args.allow_unauthenticated:
        print(f"kb-mcp: refusing to serve {args.host} without authentication: set KB_AUTH_TOKEN (or "
              "KB_AUTH_TOKENS_FILE), or pass --allow-unauthenticated if a proxy in front authenticates",
              file=sys.stderr)
        return EXIT_USAGE
    if args.stateless:
        settings = settings.model_copy(update={"http_stateless": True})
    return _serve_http(settings, args.host, args.port)


def _serve_http(settings: Settings, host: str, port: int) -> int:
    import uvicorn

    from kb_mcp.http import http_app
    from kb_mcp.server import build_server

    problem = _why_not_servable(settings)
    if problem is not None:
        print(f"kb-mcp: {problem}", file=sys.stderr)
        return EXIT_FAIL
    mcp, holder = build_server(settings, issuer_url=f"http://{host}:{port}")
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


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# ---------------------------------------------------------------- store commands

def _with_store(settings: Settings, work: Callable[[Any], Awaitable[int]]) -> int:
    from kb_mcp.store import KnowledgeStore

    async def run() -> int:
        async with KnowledgeStore.open(settings) as store:
            return await work(store)

    return asyncio.run(run())


def _ingest(settings: Settings, args: argparse.Namespace) -> int:
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


def _export(settings: Settings, args: argparse.Namespace) -> int:
    return _transfer(settings, args.file, export=True)


def _import(settings: Settings, args: argparse.Namespace) -> int:
    return _transfer(settings, args.file, export=False)


def _transfer(settings: Settings, file: Path, *, export: bool) -> int:
    """`export FILE` / `import FILE`: JSONL with vectors, through the bounded store API."""
    async def work(store: Any) -> int:
        count = await (store.export(file) if export else store.import_(file))
        print(f"{'exported' if export else 'imported'} {count} fact(s) {'to' if export else 'from'} {file}",
              file=sys.stderr)
        return EXIT_OK

    return _with_store(settings, work)


def _stats(settings: Settings, args: argparse.Namespace) -> int:
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
        from kb_mcp.metrics import summarize_remote

        token = settings.auth_token.get_secret_value() if settings.auth_token else None
        print()
        print(summarize_remote(args.server, token))
    return code


def _reindex(settings: Settings, args: argparse.Namespace) -> int:
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


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    from kb_mcp.auth import load_tokens
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


def _doctor(settings: Settings, args: argparse.Namespace) -> int:
    from kb_mcp.doctor import run_doctor

    return asyncio.run(run_doctor(settings))


def _eval(settings: Settings, args: argparse.Namespace) -> int:
    from kb_mcp.bench.evaluate import run_eval

    return run_eval(settings, args)


def _bench(settings: Settings, args: argparse.Namespace) -> int:
    from kb_mcp.bench.runner import run_bench

    return run_bench(settings, args)


_COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
    "serve": _serve, "ingest": _ingest, "export": _export, "import": _import, "stats": _stats,
    "doctor": _doctor, "reindex": _reindex, "migrate": _migrate, "bench": _bench, "eval": _eval,
}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

