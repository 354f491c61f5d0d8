"""`memctl bench latency`: recall latency, per-channel time, ingest rate, disk and RSS."""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from memory.app import Context
from memory.bench import synthetic
from memory.project import Project
from memory.recall import RecallOptions
from memory.record import Memory
from memory.service import Memories, embed_text
from memory.store.snapshot import Filter

QUERIES = 300
SINGLE_WRITES = 100
FLUSH_ROUNDS = 5
# Texts embedded alone, right after the batch ingest: the embedder's own rate is the ceiling
# of the ingest rate (embedding is about 90% of ingest time), and, being compute-bound, a
# reading of the machine's speed at the time of the run.
EMBED_SAMPLE = 2_000
STAGES = ("snapshot", "fuse", "rows", "reinforce")


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def _disk_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def _semantic_recall(mem: Memories, queries: list[str]) -> dict[str, Any]:
    """How much of the exact scan's top 10 and top 150 (what recall asks the semantic channel
    for) the prefiltered scan returns, on these queries; 1.0 when the scan is exact."""
    snap = mem.store.snapshot()
    if snap.vectors is None or snap.basis is None:
        return {"semantic_prefilter": False, "semantic_recall@10": 1.0,
                "semantic_recall@150": 1.0}
    f = Filter(mem.project.key)
    found = {10: 0, 150: 0}
    for vector in mem.embedder().embed(queries):
        exact = [i for i, _ in snap.nearest(vector, f, 150, exact=True)]
        approx = [i for i, _ in snap.nearest(vector, f, 150)]
        for k in found:
            found[k] += len(set(exact[:k]) & set(approx[:k]))
    return {"semantic_prefilter": True,
            **{f"semantic_recall@{k}": round(v / (k * len(queries)), 4)
               for k, v in found.items()}}


def run_size(ctx: Context, n: int, progress: Callable[[str, int, int], None] | None = None
             ) -> dict[str, Any]:
    mem = ctx.memories(Project(f"bench-{n}", f"bench-{n}"))
    ctx.embedder()  # model load is not part of ingest or recall time
    items = synthetic.generate(n)
    records: list[Memory] = []
    for kind, text, when in items:
        records.append(mem.prepare(text, kind=kind, source="agent", valid_from=when))
    done = 0

    def step(k: int) -> None:
        nonlocal done
        done += k
        if progress:
            progress(f"ingest {n:,}", done, n)

    started = time.perf_counter()
    mem.insert_many(records, batch=512, progress=step)
    batch_rate = n / (time.perf_counter() - started)
    sample = [embed_text(r) for r in records[:EMBED_SAMPLE]]
    if progress:
        progress(f"embedding {len(sample):,} texts alone", 0, len(sample))
    started = time.perf_counter()
    ctx.embedder().embed(sample)
    embed_rate = len(sample) / (time.perf_counter() - started)

    singles = synthetic.generate(SINGLE_WRITES, seed=99)
    started = time.perf_counter()
    for kind, text, when in singles:
        mem.remember(text + " (single write)", kind=kind, source="agent", valid_from=when)
    single_rate = SINGLE_WRITES / (time.perf_counter() - started)

    timings: dict[str, float] = {}
    latencies: list[float] = []
    qs = synthetic.queries(QUERIES)
    for warm in qs[:10]:
        mem.search(warm, RecallOptions(k=10))
    for i, q in enumerate(qs):
        started = time.perf_counter()
        mem.search(q, RecallOptions(k=10), timings)
        latencies.append((time.perf_counter() - started) * 1000)
        if progress:
            progress(f"recall {n:,}", i + 1, len(qs))
    # Usage counts are flushed every 30 s, so the timed queries above (a few seconds) may see
    # none: time the recall right after a flush (it reloads the changed fragments) apart.
    after_flush = []
    for q in qs[:FLUSH_ROUNDS]:
        mem.store.flush_touches()
        started = time.perf_counter()
        mem.search(q, RecallOptions(k=10))
        after_flush.append((time.perf_counter() - started) * 1000)
    return {
        **_semantic_recall(mem, qs),
        "after_flush_ms": round(statistics.median(after_flush), 2),
        "p50_ms": round(statistics.median(latencies), 2),
        "p95_ms": round(_pct(latencies, 95), 2),
        "p99_ms": round(_pct(latencies, 99), 2),
        "channel_ms": {k: round(v / len(qs) * 1000, 2) for k, v in sorted(timings.items())
                       if k not in STAGES},
        # Recall's own work around the channels (snapshot check, fusion, rows, reinforcement).
        "stage_ms": {k: round(timings.get(k, 0.0) / len(qs) * 1000, 2) for k in STAGES},
        "batch_ingest_per_s": round(batch_rate, 1),
        "single_ingest_per_s": round(single_rate, 1),
        "embed_only_per_s": round(embed_rate, 1),
        # The store only (table + index): the models directory is shared, not per project.
        "disk_mb": round(_disk_mb(ctx.paths.lance) + _disk_mb(ctx.paths.lexical), 1),
        "rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
