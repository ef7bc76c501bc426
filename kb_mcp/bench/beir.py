"""`kb-mcp eval --beir DIR`: retrieval quality on a BEIR-format benchmark (`corpus.jsonl`, `queries.jsonl`,
`qrels/<split>.tsv`), scored the way its authors score it: one document = title + " " + text, nDCG@10 with the
qrels' grades as gains (trec_eval's formula), recall@10 and @50 over the relevant documents, MRR@10, p50 latency
per mode with the model run for every query. The corpus goes into a scratch namespace through the store's batch
path, is asked every query of the split per mode, and is dropped after (`--keep` keeps it, `--reuse` asks a kept
one again without loading it)."""

from __future__ import annotations

import asyncio
import json
import math
import re
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kb_mcp.bench.corpus import Item
from kb_mcp.errors import InvalidInput
from kb_mcp.facts.rules import FACT_ID_PATTERN, SearchMode
from kb_mcp.store import KnowledgeStore

LOAD_BATCH = 512  # documents per store_many call
TOP_K = 50  # the most semantic_search returns: recall@50 needs all of them


@dataclass(frozen=True)
class Benchmark:
    """A BEIR set (or a slice of it): the documents to store, the queries asked and their graded judgements."""

    name: str
    documents: dict[str, str]  # id -> title + " " + text
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]  # query id -> document id -> grade (> 0 relevant)


@dataclass(frozen=True)
class BeirScore:
    """One mode on one benchmark."""

    set: str
    mode: str
    queries: int
    ndcg_at_10: float
    recall_at_10: float
    recall_at_50: float
    mrr_at_10: float
    p50_ms: float


def read_beir(root: Path, split: str, max_queries: int | None = None, max_docs: int | None = None) -> Benchmark:
    """The split's judged queries (the first `max_queries`) and the corpus; with `max_docs`, only the documents
    those queries judge relevant plus the corpus's first ones up to that many (a slice for tests)."""
    try:
        qrels: dict[str, dict[str, int]] = {}
        with (root / "qrels" / f"{split}.tsv").open(encoding="utf-8") as lines:
            for n, line in enumerate(lines):
                parts = line.rstrip("\n").split("\t")
                if n == 0 and not parts[-1].lstrip("-").isdigit():
                    continue  # the header
                qrels.setdefault(parts[0], {})[parts[1]] = int(parts[2])
        texts = {o["_id"]: o["text"] for o in _jsonl(root / "queries.jsonl")}
        corpus = [(o["_id"], f"{o.get('title', '')} {o.get('text', '')}".strip())
                  for o in _jsonl(root / "corpus.jsonl")]
    except (OSError, KeyError, IndexError, ValueError) as exc:
        raise InvalidInput("--beir", f"{root} is not a BEIR set with split {split!r}: {exc}") from None
    chosen = [q for q in qrels if q in texts and any(g > 0 for g in qrels[q].values())][:max_queries]
    relevant = {d for q in chosen for d in qrels[q]}
    documents = {d: text for d, text in corpus if max_docs is None or d in relevant}
    for d, text in corpus:
        if max_docs is None or len(documents) >= max_docs:
            break
        documents.setdefault(d, text)
    return Benchmark(name=f"{root.name} {split}", documents=documents, queries={q: texts[q] for q in chosen},
                     qrels={q: {d: g for d, g in qrels[q].items() if d in documents} for q in chosen})


def as_items(bench: Benchmark) -> list[Item]:
    """The benchmark's documents as `kb-mcp bench`'s corpus, each with one of its queries (in turn) to ask."""
    queries = list(bench.queries.values()) or [""]
    return [Item(fact=text, query=queries[i % len(queries)], topic="beir")
            for i, text in enumerate(bench.documents.values())]


def ndcg_at(ranked: list[str], grades: dict[str, int], k: int = 10) -> float:
    """trec_eval's ndcg_cut: gain = grade, discount log2(rank + 1), over the ideal order of the judged grades."""
    dcg = sum(grades.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sorted((g for g in grades.values() if g > 0), reverse=True)[:k]
    best = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / best if best > 0 else 0.0


def recall_at(ranked: list[str], grades: dict[str, int], k: int) -> float:
    relevant = {d for d, g in grades.items() if g > 0}
    return len(relevant & set(ranked[:k])) / len(relevant) if relevant else 0.0


def reciprocal_rank(ranked: list[str], grades: dict[str, int], k: int = 10) -> float:
    return next((1.0 / (i + 1) for i, d in enumerate(ranked[:k]) if grades.get(d, 0) > 0), 0.0)


def fact_id_of(doc_id: str) -> str:
    """A BEIR document id as a fact id (ids are kept as they are when they are valid fact ids)."""
    return doc_id if re.fullmatch(FACT_ID_PATTERN, doc_id) else "d-" + doc_id.encode().hex()[:120]


async def load(store: KnowledgeStore, bench: Benchmark) -> None:
    """Every document into the (emptied) namespace through store_many; returns once the index holds them all."""
    await store.drop_namespace()
    await store.ensure_index()
    items = [{"content": text, "fact_id": fact_id_of(d)} for d, text in bench.documents.items()]
    started = time.monotonic()
    for start in range(0, len(items), LOAD_BATCH):
        await store.store_many(items[start:start + LOAD_BATCH])
        done = min(start + LOAD_BATCH, len(items))
        _say(f"loaded {done}/{len(items)} documents ({done / max(time.monotonic() - started, 1e-9):.1f}/s)")
    while (await store.stats()).index_state != "ready":
        await asyncio.sleep(0.1)


async def rankings(store: KnowledgeStore, bench: Benchmark, mode: SearchMode) -> tuple[dict[str, list[str]],
                                                                                         list[float]]:
    """Every query's ranked document ids (top 50) and each search's time in ms."""
    back = {fact_id_of(d): d for d in bench.documents}
    runs: dict[str, list[str]] = {}
    times: list[float] = []
    for qid, text in bench.queries.items():
        started = time.perf_counter()
        hits = await store.semantic_search(text, top_k=TOP_K, mode=mode)
        times.append((time.perf_counter() - started) * 1000)
        runs[qid] = [back.get(h.fact_id, h.fact_id) for h in hits]
    return runs, times


def score(bench: Benchmark, mode: str, runs: dict[str, list[str]], times: list[float]) -> BeirScore:
    n = max(1, len(bench.queries))

    def mean(metric: Callable[[list[str], dict[str, int]], float]) -> float:
        return round(sum(metric(runs.get(q, []), bench.qrels[q]) for q in bench.queries) / n, 4)

    return BeirScore(set=bench.name, mode=mode, queries=len(bench.queries), ndcg_at_10=mean(ndcg_at),
                     recall_at_10=mean(lambda r, g: recall_at(r, g, 10)),
                     recall_at_50=mean(lambda r, g: recall_at(r, g, 50)), mrr_at_10=mean(reciprocal_rank),
                     p50_ms=round(statistics.median(times), 2) if times else 0.0)


def table(scores: list[BeirScore]) -> str:
    rows = ["| set | mode | queries | nDCG@10 | recall@10 | recall@50 | MRR@10 | p50 ms |", "|---" * 8 + "|"]
    rows += [f"| {s.set} | {s.mode} | {s.queries} | {s.ndcg_at_10} | {s.recall_at_10} | {s.recall_at_50} | "
             f"{s.mrr_at_10} | {s.p50_ms} |" for s in scores]
    return "\n".join(rows)


def _jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
