"""`kb-mcp bench`: placeholder replaced by the benchmark implementation."""

from __future__ import annotations

import argparse

from kb_mcp.config import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--facts", type=int, default=10_000)


def run_bench(settings: Settings, args: argparse.Namespace) -> int:
    raise SystemExit("kb-mcp bench is not implemented yet")
