"""`kb-mcp eval`: retrieval quality per search mode — recall@1, recall@5, MRR@10 and p50 latency — on the built-in
sets (the bench corpus; the hard paraphrase set) or on the user's own `{"query", "fact_id"}` pairs against their
namespace, so a model or fusion change can be checked on *their* knowledge base before switching."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kb_mcp.bench import beir, hard
from kb_mcp.bench.corpus import Item, generate
from kb_mcp.config import Settings
from kb_mcp.errors import InvalidInput
from kb_mcp.facts.rules import SEARCH_MODES, SearchMode
from kb_mcp.store import Backend, KnowledgeStore

Pairs = list[tuple[str, str]]  # (query, expected fact_id)


@dataclass(frozen=True)
class Score:
    """One mode on one set."""

    set: str
    mode: str
    queries: int
    recall_at_1: float
    recall_at_5: float
    mrr_at_10: float
    p50_ms: float


def run_eval(settings: Settings, args: argparse.Namespace) -> int:
    modes: list[SearchMode] = list(SEARCH_MODES) if args.mode == "all" else [args.mode]
    if args.beir:
        found = asyncio.run(_beir(settings, args, modes))
        print(json.dumps([s.__dict__ for s in found], indent=2) if args.json else beir.table(found))
        return 0
    scores = asyncio.run(_main(settings, args, modes))
    print(json.dumps([s.__dict__ for s in scores], indent=2) if args.json else table(scores))
    return 0


async def _beir(settings: Settings, args: argparse.Namespace, modes: list[SearchMode]) -> list[beir.BeirScore]:
    bench = beir.read_beir(Path(args.beir), args.split, args.queries, args.docs)
    settings = settings.model_copy(update={"query_cache_size": 0})  # every search pays for its own embedding
    async with Backend.open(settings) as backend:
        store = backend.store("eval-beir")
        if not (args.reuse and await store.count() == len(bench.documents)):
            _say(f"loading {len(bench.documents)} documents of {bench.name} into namespace {store.namespace}")
            await beir.load(store, bench)
        try:
            return [beir.score(bench, mode, *await beir.rankings(store, bench, mode)) for mode in modes]
        finally:
            if not args.keep:
                await store.drop_namespace()


async def _main(settings: Settings, args: argparse.Namespace, modes: list[SearchMode]) -> list[Score]:
    scores: list[Score] = []
    settings = settings.model_copy(update={"query_cache_size": 0})  # every mode pays for its own embedding
    async with Backend.open(settings) as backend:
        if args.pairs:
            store = backend.store(settings.namespace)
            pairs = read_pairs(Path(args.pairs))
            for mode in modes:
                scores.append(await evaluate(store, pairs, mode, f"pairs:{Path(args.pairs).name}"))
            return scores
        sets = {"bench": lambda: generate(args.facts, seed=args.seed),
                "hard": lambda: hard.generate(max(1, args.facts // len(hard.SHAPES)), seed=args.seed)}
        for name in (["bench", "hard"] if args.set == "all" else [args.set]):
            items = sets[name]()
            store = backend.store(f"eval-{name}")
            await _load(store, items)
            rng = random.Random(args.seed)
            sample = rng.sample(range(len(items)), min(args.queries or 400, len(items)))
            pairs = [(items[i].query, f"e{i}") for i in sample]
            try:
                for mode in modes:
                    scores.append(await evaluate(store, pairs, mode, f"{name} ({len(items)} facts)"))
            finally:
                if not args.keep:
                    await store.drop_namespace()
    return scores


async def _load(store: KnowledgeStore, items: list[Item]) -> None:
    await store.drop_namespace()
    await store.ensure_index()
    _say(f"loading {len(items)} facts into namespace {store.namespace}")
    for start in range(0, len(items), 2048):
        await store.store_many([{"content": it.fact, "fact_id": f"e{start + i}"}
                                for i, it in enumerate(items[start:start + 2048])])
    while (await store.stats()).index_state != "ready":
        await asyncio.sleep(0.1)


async def evaluate(store: KnowledgeStore, pairs: Pairs, mode: SearchMode, label: str) -> Score:
    """Ask every query in `mode`, top 10; where the expected fact ranks gives recall@1/@5 and MRR@10."""
    ranks: list[int | None] = []
    times: list[float] = []
    for query, expected in pairs:
        started = time.perf_counter()
        hits = await store.semantic_search(query, top_k=10, mode=mode)
        times.append((time.perf_counter() - started) * 1000)
        ids = [h.fact_id for h in hits]
        ranks.append(ids.index(expected) + 1 if expected in ids else None)
    n = max(1, len(pairs))
    return Score(set=label, mode=mode, queries=len(pairs),
                 recall_at_1=round(sum(r == 1 for r in ranks) / n, 4),
                 recall_at_5=round(sum(r is not None and r <= 5 for r in ranks) / n, 4),
                 mrr_at_10=round(sum(1 / r for r in ranks if r is not None) / n, 4),
                 p50_ms=round(statistics.median(times), 2) if times else 0.0)


def read_pairs(path: Path) -> Pairs:
    """`{"query": ..., "fact_id": ...}` lines; a bad line is named."""
    pairs: Pairs = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item: Any = json.loads(line)
            pairs.append((str(item["query"]), str(item["fact_id"])))
        except (json.JSONDecodeError, KeyError, TypeError):
            raise InvalidInput(f"{path.name} line {lineno}", 'must be {"query": "...", "fact_id": "..."}') from None
    if not pairs:
        raise InvalidInput(path.name, "holds no pairs")
    return pairs


def table(scores: list[Score]) -> str:
    rows = ["| set | mode | queries | recall@1 | recall@5 | MRR@10 | p50 ms |", "|---|---|---|---|---|---|---|"]
    rows += [f"| {s.set} | {s.mode} | {s.queries} | {s.recall_at_1} | {s.recall_at_5} | {s.mrr_at_10} | {s.p50_ms} |"
             for s in scores]
    return "\n".join(rows)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
