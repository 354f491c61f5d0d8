"""Multi-channel recall: run the channels, fuse their rankings, weigh by trust and retention.

Every hit carries its parts (fused relevance, rank in each channel, trust, retention) so a
user can see why it ranked.
"""

from __future__ import annotations

import bisect
import heapq
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from memory.llm.base import default_contexts
from memory.recall.channels import Query, context, entity, lexical, semantic, temporal
from memory.record import KINDS, Memory, utcnow
from memory.scoring import decay, fusion
from memory.scoring import trust as trust_mod
from memory.store import MemoryStore
from memory.store.snapshot import Filter, Snapshot
from memory.store.table import LIGHT_COLUMNS, sql_in, sql_str
from memory.timeparse import TimeWindow, parse_time_expression, strip_time_expression

CHANNELS = ("semantic", "lexical", "entity", "temporal", "context")
MAX_K = 100
# Neighbours in time (adjacent memories of one session: conversation turns, one agent
# session's notes) share scores twice: within a channel before fusion (SMOOTH), and from the
# strongest fused hits after it (NEIGHBOUR_SHARE). Measured on LoCoMo dev: +3.5 points R@5.
SMOOTH = {"lexical": 0.4, "semantic": 0.2}
NEIGHBOUR_SHARE = 0.4
NEIGHBOUR_SEEDS = 3
MAX_SESSION_ROWS = 5_000
# A final score is relevance times at most this (full trust weight, no decay), with a margin
# for rounding: once the k-th score beats the next relevance times it, ranking can stop.
BOUND = fusion.gentle(trust_mod.WEIGHT_MAX, 1.0) * (1 + 1e-9)
# Rows read ahead while the query embedding finishes (see _prefetch), in chunks so that the
# embedding, once done, waits for one chunk at most.
PREFETCH_ROWS = 24
PREFETCH_CHUNK = 8


@dataclass
class RecallOptions:
    k: int = 10
    kinds: Sequence[str] | None = None
    files: Sequence[str] = ()
    since: datetime | None = None
    until: datetime | None = None
    include_superseded: bool = False
    channels: Sequence[str] | None = None  # None: all (benchmarks restrict to one)
    candidates: int = 150  # per channel, whatever k is: the top k never depends on k
    reinforce: bool = True
    now: datetime | None = None


@dataclass
class Hit:
    memory: Memory
    score: float
    relevance: float
    ranks: dict[str, int] = field(default_factory=dict)
    trust: float = 0.0
    retention: float = 1.0

    def why(self) -> str:
        ranks = ", ".join(f"{c} #{r}" for c, r in sorted(self.ranks.items(), key=lambda x: x[1]))
        return f"{ranks or 'neighbour'}; trust {self.trust:.2f}; retention {self.retention:.2f}"

    def to_public(self) -> dict[str, object]:
        out = self.memory.to_public()
        out.update(score=round(self.score, 6), relevance=round(self.relevance, 6),
                   ranks=self.ranks, retention=round(self.retention, 4), why=self.why())
        return out


def _visibility(project: str, opts: RecallOptions, window: TimeWindow | None
                ) -> tuple[str, Filter]:
    """Which memories recall may return: as a LanceDB where-clause (for the channels that
    search LanceDB) and as the same rule over the snapshot's arrays."""
    where = f"project = {sql_str(project)} AND status = 'active'"
    if not opts.include_superseded:
        where += " AND superseded_by IS NULL"
    kinds: tuple[str, ...] | None = None
    if opts.kinds:
        kinds = tuple(k for k in opts.kinds if k in KINDS) or ("-",)
        where += f" AND {sql_in('kind', list(kinds))}"
    explicit = opts.since or opts.until
    bounds = TimeWindow(opts.since, opts.until, "filter", "") if explicit else None
    spans: list[tuple[int | None, int | None]] = []
    for w in (bounds, window if window and window.mode == "filter" else None):
        if w is not None:
            where += f" AND {temporal.window_sql(w)}"
            spans.append(temporal.window_bounds(w))
    return where, Filter(project, opts.include_superseded, kinds, tuple(spans))


def recall(store: MemoryStore, embed: Callable[[Sequence[str]], np.ndarray], project: str,
           text: str, opts: RecallOptions, timings: dict[str, float] | None = None
           ) -> list[Hit]:
    """Ranked hits for `text`. If `timings` is given, seconds spent per channel (and in the
    stages around them: snapshot, fuse, rows, reinforce) are added."""
    clock = _Clock(timings)
    k = max(1, min(int(opts.k), MAX_K))
    now = opts.now or utcnow()
    window = parse_time_expression(text, now)
    core = strip_time_expression(text, window) if window else text
    core = core.strip() or text
    window = temporal.with_report_lag(window) if window else None
    active = set(opts.channels or CHANNELS)
    active -= {"temporal"} if window is None else set()
    active -= set() if opts.files else {"context"}
    # The query's embedding runs on another thread (llama.cpp releases the GIL) while the
    # snapshot check and the channels that need only the text run here; then the two that
    # need the vector.
    pending = _overlap().submit(embed, [core]) if active & {"semantic", "temporal"} else None
    where, visible = _visibility(project, opts, window)
    # Read the table's version before any channel: every write acknowledged by now is seen.
    snap = store.snapshot()
    clock.lap("snapshot")
    limit = max(opts.candidates, k)
    q = Query(project=project, text=core, vector=None, where=where,
              limit=limit, files=list(opts.files), filter=visible, snapshot=snap)

    scored: dict[str, list[tuple[str, float]]] = {}
    runs: dict[str, Callable[[], list[tuple[str, float]]]] = {
        "lexical": lambda: lexical.search(store, q),
        "entity": lambda: entity.search(store, q),
        "context": lambda: context.search(store, q),
        "semantic": lambda: semantic.search(store, q),
        # A filter window already bounds every channel: inside it, the temporal ranking is
        # the semantic one, so it is not searched twice.
        "temporal": lambda: scored["semantic"] if window is not None and window.mode == "filter"
        and "semantic" in scored else temporal.search(store, q, window),
    }
    neighbours: dict[str, list[str]] = {}
    seen: set[str] = set()
    met: set[str] = set()  # channels whose candidates were looked up

    def add_neighbours() -> set[str]:
        """Looks up the sessions of the candidates found since the last call; returns the
        ids whose neighbour list this added or changed."""
        lists = [lst for name, lst in scored.items() if name not in met]
        met.update(scored)
        new = [i for lst in lists for i, _ in lst if i not in seen]
        seen.update(new)
        if not new:
            return set()
        return _merge(neighbours, snap.session_neighbours(new, visible, MAX_SESSION_ROWS))

    # The text channels' candidates, smoothed and fused while the embedding finishes.
    early: _Early | None = None
    fetched: dict[str, Memory] = {}
    for name, run in runs.items():
        if name not in active:
            continue
        if name in ("semantic", "temporal") and q.vector is None and pending is not None:
            clock.lap(None)
            add_neighbours()
            early = _Early.of(scored, neighbours)
            clock.lap("fuse")
            fetched = _prefetch(store, snap, early.fused.scores, pending)
            clock.lap("rows")
            q.vector = pending.result()[0]
            clock.lap("embed")  # what is left of it once the text channels are done
        clock.lap(None)
        scored[name] = run()
        clock.lap(name)

    clock.lap(None)
    changed = add_neighbours()
    if early is None or not early.still_valid(bool(neighbours), changed):
        early = _Early.of({}, neighbours)
    rest = _rankings({c: lst for c, lst in scored.items() if c not in early.rankings},
                     neighbours)
    rankings = early.rankings | rest
    fused = fusion.rrf_flat(rest, fusion.DEFAULT_WEIGHTS, then=early.fused)
    if not fused.scores:
        return []
    top_possible = fusion.max_score(rankings, fusion.DEFAULT_WEIGHTS)
    relevance = fusion.normalised_all(fused.scores, top_possible)
    for seed in _best(relevance, NEIGHBOUR_SEEDS, fused.best_rank):
        for nb in neighbours.get(seed, ()):
            if NEIGHBOUR_SHARE * relevance[seed] > relevance.get(nb, 0.0):
                relevance[nb] = NEIGHBOUR_SHARE * relevance[seed]

    clock.lap("fuse")
    # Visibility comes from the table (via the snapshot), the source of truth: the index does
    # not know it. The pool is ranked from the snapshot; full rows are read for the top k only.
    # By relevance, then id: a stable descending sort of the ids in order.
    pool = sorted(sorted(relevance), key=relevance.__getitem__, reverse=True)[: limit * 2]
    pool = snap.visible(pool, visible)
    best = max((relevance[i] for i in pool), default=1.0) or 1.0
    now_us = temporal.ts_micros(now)
    scored_rows: list[tuple[str, tuple[float, float, float]]] = []
    for r in _score_fields(snap, pool):  # by relevance, best first
        if len(scored_rows) >= k and scored_rows[k - 1][1][0] > relevance[r["id"]] * BOUND:
            break  # no memory from here on can reach the top k
        parts = _score(r, relevance[r["id"]], relevance[r["id"]] / best, now_us)
        bisect.insort(scored_rows, (r["id"], parts), key=lambda x: (-x[1][0], x[0]))
    top = scored_rows[:k]
    memories = fetched | _memories(store, snap, [i for i, _ in top if i not in fetched])
    # A neighbour lifted by a seed, in no channel's list, has no ranks.
    hits = [Hit(memories[i], score, relevance[i], fused.ranks_of(i), trust, retention)
            for i, (score, trust, retention) in top if i in memories]
    clock.lap("rows")
    if opts.reinforce and hits:
        _reinforce(store, [h.memory.id for h in hits], now)
        clock.lap("reinforce")
    return hits


def _memories(store: MemoryStore, snap: Snapshot, ids: list[str]) -> dict[str, Memory]:
    """The rows of `ids` that `snap` holds, by id."""
    if not ids:
        return {}
    rows = store.snapshots.take(ids, LIGHT_COLUMNS, snap).to_pylist()
    return {m.id: m for m in map(Memory.from_row, rows)}


def _prefetch(store: MemoryStore, snap: Snapshot, scores: dict[str, float],
              pending: Future[Any]) -> dict[str, Memory]:
    """While the query embedding finishes, the rows of the text channels' best ids, a few
    at a time until the vector is ready: the final top k mostly comes from them, so little
    is left to read after it (86% of the top 10 among the first 16, at 100,000 rows)."""
    best = heapq.nlargest(PREFETCH_ROWS, scores, key=scores.__getitem__)
    out: dict[str, Memory] = {}
    for start in range(0, len(best), PREFETCH_CHUNK):
        if pending.done():
            break  # the critical path is waiting: fetch the rest after ranking
        out.update(_memories(store, snap, best[start:start + PREFETCH_CHUNK]))
    return out


def _merge(neighbours: dict[str, list[str]], found: dict[str, list[str]]) -> set[str]:
    """Adds `found` to `neighbours`; returns the ids whose list this added or changed."""
    changed = {i for i, nb in found.items() if neighbours.get(i) != nb}
    neighbours.update(found)
    return changed


def _rankings(scored: dict[str, list[tuple[str, float]]], neighbours: dict[str, list[str]]
              ) -> dict[str, list[str]]:
    """Each channel's ids best first, its scores smoothed over session neighbours (SMOOTH)."""
    return {
        name: [i for i, _ in fusion.smooth(lst, neighbours, SMOOTH[name])]
        if name in SMOOTH and neighbours else [i for i, _ in lst]
        for name, lst in scored.items()
    }


@dataclass(frozen=True)
class _Early:
    """The text channels' rankings and their fusion, made while the query embedding
    finishes. Channels fuse in name order, and the text ones (context, entity, lexical)
    sort before the vector ones, so extending this fusion gives the sums of one fusion."""

    rankings: dict[str, list[str]]
    fused: fusion.Fused
    had_neighbours: bool
    ids: frozenset[str]

    @classmethod
    def of(cls, scored: dict[str, list[tuple[str, float]]], neighbours: dict[str, list[str]]
           ) -> _Early:
        rankings = _rankings(scored, neighbours)
        return cls(rankings, fusion.rrf_flat(rankings, fusion.DEFAULT_WEIGHTS),
                   bool(neighbours), frozenset(i for lst in scored.values() for i, _ in lst))

    def still_valid(self, has_neighbours: bool, changed: set[str]) -> bool:
        """Whether smoothing now would rank these channels the same: with or without any
        neighbours they order ties differently, and a list can change when a session is
        met again past MAX_SESSION_ROWS."""
        return has_neighbours == self.had_neighbours and self.ids.isdisjoint(changed)


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _overlap() -> ThreadPoolExecutor:
    """Threads for the work recall overlaps (query embeddings): one per concurrent recall,
    up to the embedder's contexts."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(default_contexts(),
                                       thread_name_prefix="memctl-query")
        return _pool


def _best(relevance: dict[str, float], n: int, best_rank: Callable[[str], int]) -> list[str]:
    """The `n` most relevant ids; ties by best channel rank, then id (the fused order)."""
    if len(relevance) > n:
        cut = heapq.nlargest(n, relevance.values())[-1]
        tied = [i for i, r in relevance.items() if r >= cut]
    else:
        tied = list(relevance)
    return sorted(tied, key=lambda i: (-relevance[i], best_rank(i), i))[:n]


def _score_fields(snap: Snapshot, pool: list[str], chunk: int = 32) -> Iterator[dict[str, Any]]:
    """`snap.score_fields` of `pool`, read a chunk at a time: ranking stops after a few."""
    for start in range(0, len(pool), chunk):
        yield from snap.score_fields(pool[start:start + chunk])


class _Clock:
    """Adds the time since the previous lap to `timings[name]` (nothing without timings)."""

    def __init__(self, timings: dict[str, float] | None) -> None:
        self.timings = timings
        self.last = time.perf_counter()

    def lap(self, name: str | None) -> None:
        if self.timings is None:
            return
        now = time.perf_counter()
        if name is not None:
            self.timings[name] = self.timings.get(name, 0.0) + now - self.last
        self.last = now


def _score(row: dict[str, Any], relevance: float, strength: float, now_us: int
           ) -> tuple[float, float, float]:
    """(score, trust, retention) of one memory's snapshot SCORE_FIELDS (times in UTC µs).
    `relevance`: fused score over the best possible; `strength`: over this query's best hit
    (the decay floor rises with it, so the query's strongest match stays findable)."""
    alpha, beta = row["trust_alpha"], row["trust_beta"]
    trust = trust_mod.mean(alpha, beta)
    # Exactly timedelta.total_seconds(): integer microseconds over 10**6.
    age_days = max(0.0, (now_us - row["valid_from"]) / 10**6 / 86400.0)
    if row["last_accessed_at"] is not None:
        # Recall reinforces: age counts from the last time it was useful.
        age_days = min(age_days, max(0.0, (now_us - row["last_accessed_at"]) / 10**6 / 86400))
    retention = decay.retention_for(row["kind"], age_days, row["access_count"],
                                    row["importance"], trust)
    score = fusion.final_score(
        relevance,
        trust_mod.weight(alpha, beta),
        decay.rank_factor(retention, min(1.0, strength)),
    )
    return score, trust, retention


def _reinforce(store: MemoryStore, ids: list[str], now: datetime) -> None:
    # Batched by the store: a write per recall would pile up LanceDB versions.
    store.touch(ids, now)
