"""`kb-mcp`: serve (stdio | http), ingest, export, import, stats, doctor, reindex, migrate, eval, bench.

`kb-mcp` with no arguments serves MCP on stdio, which is what client configs launch. Everything this command prints
for a person goes to stderr, except the output a subcommand was asked for (stats/doctor tables, JSON).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import ValidationError

from kb_mcp import __version__, logs
from kb_mcp.cli import commands
from kb_mcp.cli.commands import EXIT_FAIL, EXIT_USAGE
from kb_mcp.config import Settings, describe_validation_error
from kb_mcp.errors import KbError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kb-mcp", description="MCP server giving LLM agents a long-term knowledge base on Redis Stack. "
        "Configuration comes from KB_* environment variables (see README).")
    parser.add_argument("--version", action="version", version=f"kb-mcp {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser("serve", help="serve MCP (default: stdio)", description=(
        "Serve the MCP tools. stdio is what Claude Desktop / Cursor launch; http serves streamable HTTP at /mcp "
        "with GET /health and GET /metrics."))
    serve.set_defaults(run=commands.serve)
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
    ingest.set_defaults(run=commands.ingest)
    ingest.add_argument("paths", nargs="+", type=Path)
    ingest.add_argument("--tag", action="append", default=[], dest="tags", help="tag every chunk (repeatable)")
    ingest.add_argument("--chunk-tokens", type=int, default=200)

    export = sub.add_parser("export", help="write every fact (with vectors) to a JSONL file")
    export.set_defaults(run=commands.export)
    export.add_argument("file", type=Path)
    imp = sub.add_parser("import", help="load a JSONL export (records without vectors are embedded)")
    imp.set_defaults(run=commands.import_file)
    imp.add_argument("file", type=Path)
    stats = sub.add_parser("stats", help="fact count, index state, memory, breaker and pool; --server adds a "
                                         "running server's tool-call metrics")
    stats.set_defaults(run=commands.stats)
    stats.add_argument("--server", metavar="URL", help="a running `serve --transport http` (e.g. "
                                                       "http://127.0.0.1:8765): read its /metrics too")
    doctor = sub.add_parser("doctor", help="check Redis, the search module, the index, the model and the timeouts")
    doctor.set_defaults(run=commands.doctor)
    reindex = sub.add_parser("reindex", help="drop and re-create the search index from the stored facts (no data "
                                             "loss); --re-embed: embed every fact again with the configured model")
    reindex.set_defaults(run=commands.reindex)
    reindex.add_argument("--re-embed", action="store_true",
                         help="give every fact of KB_NAMESPACE a vector from the configured embedding model and "
                              "record that model (after changing KB_EMBEDDING_PROVIDER/KB_EMBEDDING_MODEL; stop the "
                              "servers still using the old model first)")
    migrate = sub.add_parser("migrate", help="move namespaces from the key layout before hash tags (in place)",
                             description="Rename every key of a namespace stored as <ns>:fact:<id> (the layout "
                                         "before hash tags) to {<ns>}:fact:<id>, create the new index and drop the "
                                         "old one. Keeps "
                                         "vectors and TTLs; idempotent and resumable.")
    migrate.set_defaults(run=commands.migrate)
    migrate.add_argument("--namespace", action="append", dest="namespaces", metavar="NS",
                         help="namespace to migrate (repeatable; default KB_NAMESPACE and every namespace of "
                              "KB_AUTH_TOKENS_FILE)")

    bench = sub.add_parser("bench", help="reproducible benchmark (see README)")
    bench.set_defaults(run=commands.bench)
    _bench_arguments(bench)
    evaluate = sub.add_parser("eval", help="retrieval quality per search mode (BEIR nDCG@10; recall@1/@5)")
    evaluate.set_defaults(run=commands.eval_sets)
    _eval_arguments(evaluate)
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
    scale = parser.add_argument_group("scale run (--scale): one namespace grown through the --facts sizes")
    scale.add_argument("--scale", action="store_true", help="grow one namespace through --facts by importing an "
                       "export with vectors; import rate, memory, HNSW recall, search p50/p95 at each size, then "
                       "export and a Redis restart at the largest (docs/benchmarks.md)")
    scale.add_argument("--cache", type=Path, default=None, help="where the corpus's vectors are kept between runs "
                       "(default ~/.cache/kb-mcp/bench; 1.5 GB per 1M facts)")
    scale.add_argument("--import-only", action="store_true", help="only import rate, memory and recall at each "
                       "size (no searches through MCP, no export, no restart): for trying HNSW settings at scale")
    scale.add_argument("--re-embed", action="store_true", help="also time `reindex --re-embed` at the largest size")
    scale.add_argument("--hnsw-sweep", metavar="M:EFC,...", default="", help="first try these HNSW M and "
                       "EF_CONSTRUCTION pairs on the smallest size, each in a scratch namespace")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"kb-mcp: {describe_validation_error(exc)}", file=sys.stderr)
        return EXIT_USAGE
    logs.configure(settings.log_level, settings.log_format)
    if args.command is None:  # no command: serve on stdio, what MCP clients launch
        args = _parser().parse_args(["serve"])
    run: Callable[[Settings, argparse.Namespace], int] = args.run
    try:
        return run(settings, args)
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
