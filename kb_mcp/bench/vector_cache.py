"""The synthetic corpus's vectors, embedded once per (seed, size, model) and kept on disk: the 1M-fact run needs 45
minutes of model time on 2 cores, which every later run (and every smaller size, a prefix of it) reuses."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from kb_mcp.bench.corpus import Item
from kb_mcp.embeddings.base import KbEmbedding, Vectors

CHUNK = 8192  # texts per embed call and per checkpoint


def default_cache() -> Path:
    return Path.home() / ".cache" / "kb-mcp" / "bench"


def corpus_vectors(items: list[Item], seed: int, embedding: KbEmbedding, cache: Path) -> Vectors:
    """Unit vectors of every item's fact, row i for item i: read from `cache` when an earlier run (of this size or a
    larger one with the same seed and model) made them, otherwise embedded now, resumably, with a progress bar."""
    from tqdm import tqdm

    cache.mkdir(parents=True, exist_ok=True)
    n, dim = len(items), embedding.dim
    for found in sorted(cache.glob(f"synthetic-seed{seed}-*-{embedding.model_name}.f32")):
        size = int(found.name.split("-")[2])
        if size >= n and _done(found) >= n:
            return np.array(np.memmap(found, dtype=np.float32, mode="r", shape=(size, dim))[:n])
    path = cache / f"synthetic-seed{seed}-{n}-{embedding.model_name}.f32"
    rows: Any = np.memmap(path, dtype=np.float32, mode="r+" if path.exists() else "w+", shape=(n, dim))
    start = _done(path)
    with tqdm(total=n, initial=start, unit="fact", desc="embed corpus (cached)", file=sys.stderr) as bar:
        for lo in range(start, n, CHUNK):
            hi = min(n, lo + CHUNK)
            rows[lo:hi] = embedding.embed([it.fact for it in items[lo:hi]])
            rows.flush()
            _mark(path, hi)
            bar.update(hi - lo)
    return np.array(rows)


def _done(path: Path) -> int:
    marker = path.with_suffix(".done")
    return int(marker.read_text()) if path.exists() and marker.exists() else 0


def _mark(path: Path, count: int) -> None:
    path.with_suffix(".done").write_text(str(count))
