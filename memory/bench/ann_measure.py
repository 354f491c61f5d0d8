"""Measurements behind `memctl bench ann`: where flat vector search stops being fast
enough, and what an ANN index buys (latency) and costs (recall against exact search, build
time).

Vectors are synthetic: unit vectors around a few hundred topic centres, like sentence
embeddings of one project's notes. No model is needed, so large sizes build quickly.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from memory.record import EMBED_DIM, Memory, new_id, utcnow
from memory.store.table import MemoryTable
from memory.textutil import content_hash

QUERIES = 60
LIMIT = 150  # what recall asks the semantic channel for
INDEX_TYPE = "IVF_HNSW_SQ"
REFINE = 5  # re-rank refine × limit ANN candidates by exact distance
WHERE = "project = 'bench' AND status = 'active' AND superseded_by IS NULL"


def synthetic_vectors(n: int, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(8, n // 200), EMBED_DIM)).astype(np.float32)
    picks = rng.integers(0, len(centres), n)
    vecs = centres[picks] + 0.9 * rng.normal(size=(n, EMBED_DIM)).astype(np.float32)
    return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)


def synthetic_records(vectors: np.ndarray, start: int) -> list[Memory]:
    now = utcnow()
    out = []
    for n, v in enumerate(vectors, start=start):
        text = f"synthetic memory {n}"
        out.append(Memory(id=new_id(now), project="bench", kind="note", text=text,
                          content_hash=content_hash(text), created_at=now, valid_from=now,
                          vector=v.tolist()))
    return out


def _timed(fn: Callable[[], Any], runs: int) -> tuple[list[float], list[Any]]:
    times, results = [], []
    for _ in range(runs):
        started = time.perf_counter()
        results.append(fn())
        times.append((time.perf_counter() - started) * 1000)
    return times, results


def measure(path: Path, sizes: list[int], index_type: str = INDEX_TYPE, refine: int = REFINE,
            progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    table = MemoryTable(path)
    raw = table._table  # the benchmark compares LanceDB query plans directly
    all_vectors = synthetic_vectors(max(sizes))
    rng = np.random.default_rng(11)
    rows: list[dict[str, Any]] = []
    have = 0
    for size in sorted(sizes):
        if progress:
            progress(f"{size:,} vectors: ingest")
        for start in range(have, size, 5_000):
            table.add(synthetic_records(all_vectors[start:min(size, start + 5_000)], start))
        have = size
        table.compact()
        picks = rng.integers(0, size, QUERIES)
        queries = all_vectors[picks] + 0.3 * rng.normal(size=(QUERIES, EMBED_DIM))
        queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)

        def search(q: np.ndarray, exact: bool) -> list[str]:
            query = (raw.search(q, vector_column_name="vector").distance_type("cosine")
                     .where(WHERE, prefilter=True).select(["id"]).limit(LIMIT))
            if exact:
                query = query.bypass_vector_index()
            elif refine:
                query = query.refine_factor(refine)
            return query.to_arrow().column("id").to_pylist()

        it = iter(queries)
        flat_ms, flat_ids = _timed(lambda it=it: search(next(it), True), QUERIES)
        if progress:
            progress(f"{size:,} vectors: build {index_type}")
        started = time.perf_counter()
        raw.create_index(metric="cosine", vector_column_name="vector", index_type=index_type,
                         replace=True)
        build_s = time.perf_counter() - started
        it = iter(queries)
        ann_ms, ann_ids = _timed(lambda it=it: search(next(it), False), QUERIES)
        recall10 = statistics.mean(len(set(a[:10]) & set(f[:10])) / 10
                                   for a, f in zip(ann_ids, flat_ids, strict=True))
        raw.drop_index("vector_idx")
        rows.append({
            "vectors": size,
            "flat_p50_ms": round(statistics.median(flat_ms), 1),
            "flat_p95_ms": round(sorted(flat_ms)[int(0.95 * (QUERIES - 1))], 1),
            "ann_p50_ms": round(statistics.median(ann_ms), 1),
            "ann_p95_ms": round(sorted(ann_ms)[int(0.95 * (QUERIES - 1))], 1),
            "ann_recall@10": round(recall10, 3),
            "build_s": round(build_s, 1),
        })
    return rows

