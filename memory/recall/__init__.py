"""Multi-channel recall: run the channels, fuse their rankings, weigh by trust and retention.

Every hit carries its parts (fused relevance, rank in each channel, trust, retention) so a
user can see why it ranked.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from memory.recall.channels import Query, context, entity, lexical, semantic, temporal
from memory.record import KINDS, Memory, utcnow
from memory.scoring import decay, fusion
from memory.scoring import trust as trust_mod
from memory.store import MemoryStore
from memory.store.table import sql_in, sql_str
from memory.timeparse import TimeWindow, parse_time_expression, strip_time_expression

CHANNELS = ("semantic", "lexical", "entity", "temporal", "context")
MAX_K = 100
NEIGHBOUR_SHARE = 0.3  # share of a strong hit's relevance given to its turn/commit neighbours
NEIGHBOUR_SEEDS = 3


@dataclass
class RecallOptions:
    k: int = 10
    kinds: Sequence[str] | None = None
    files: Sequence[str] = ()
    since: datetime | None = None
    until: datetime | None = None
    include_superseded: bool = False
    channels: Sequence[str] | None = None  # None: all (benchmarks restrict to one)
    candidates: int = 50
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


def _visibility(project: str, opts: RecallOptions, window: TimeWindow | None) -> str:
    where = f"project = {sql_str(project)} AND status = 'active'"
    if not opts.include_superseded:
        where += " AND superseded_by IS NULL"
    if opts.kinds:
        kinds = [k for k in opts.kinds if k in KINDS]
        where += f" AND {sql_in('kind', kinds or ['-'])}"
    explicit = opts.since or opts.until
    bounds = TimeWindow(opts.since, opts.until, "filter", "") if explicit else None
    for w in (bounds, window if window and window.mode == "filter" else None):
        if w is not None:
            where += f" AND {temporal.window_sql(w)}"
    return where


def recall(store: MemoryStore, embed: Callable[[Sequence[str]], np.ndarray], project: str,
           text: str, opts: RecallOptions, timings: dict[str, float] | None = None
           ) -> list[Hit]:
    """Ranked hits for `text`. If `timings` is given, seconds spent per channel are added."""
    k = max(1, min(int(opts.k), MAX_K))
    now = opts.now or utcnow()
    window = parse_time_expression(text, now)
    core = strip_time_expression(text, window) if window else text
    core = core.strip() or text
    active = set(opts.channels or CHANNELS)
    where = _visibility(project, opts, window)
    limit = max(opts.candidates, k * 3)
    q = Query(project=project, text=core, vector=None, where=where,
              limit=limit, files=list(opts.files))
    if active & {"semantic", "temporal"}:
        started = time.perf_counter()
        q.vector = embed([core])[0]
        if timings is not None:
            timings["embed"] = timings.get("embed", 0.0) + time.perf_counter() - started

    rankings: dict[str, list[str]] = {}
    runs: dict[str, Callable[[], list[tuple[str, float]]]] = {
        "semantic": lambda: semantic.search(store, q),
        "lexical": lambda: lexical.search(store, q),
        "entity": lambda: entity.search(store, q),
        "temporal": lambda: temporal.search(store, q, window),
        "context": lambda: context.search(store, q),
    }
    skip = {"temporal"} if window is None else set()
    if not q.files:
        skip.add("context")
    for name, run in runs.items():
        if name in active and name not in skip:
            started = time.perf_counter()
            rankings[name] = [i for i, _ in run()]
            if timings is not None:
                timings[name] = timings.get(name, 0.0) + time.perf_counter() - started

    fused = fusion.rrf(rankings, fusion.DEFAULT_WEIGHTS)
    if not fused:
        return []
    top_possible = fusion.max_score(rankings, fusion.DEFAULT_WEIGHTS)
    relevance = {i: fusion.normalised(s, top_possible) for i, s in fused.items()}
    ranks = {i: s.ranks for i, s in fused.items()}

    # Visibility comes from the table, the source of truth (the index does not know it).
    pool = sorted(relevance, key=lambda i: -relevance[i])[: limit * 2]
    rows = {m.id: m for m in store.table.rows(f"({where}) AND {sql_in('id', pool)}")}
    _add_neighbours(store, where, rows, relevance, ranks)

    hits = [_score(m, relevance[m.id], ranks.get(m.id, {}), now) for m in rows.values()]
    hits.sort(key=lambda h: (-h.score, h.memory.id))
    hits = hits[:k]
    if opts.reinforce and hits:
        _reinforce(store, [h.memory.id for h in hits], now)
    return hits


def _score(memory: Memory, relevance: float, ranks: dict[str, int], now: datetime) -> Hit:
    trust = trust_mod.mean(memory.trust_alpha, memory.trust_beta)
    age_days = max(0.0, (now - memory.valid_from).total_seconds() / 86400.0)
    if memory.last_accessed_at is not None:
        # Recall reinforces: age counts from the last time it was useful.
        age_days = min(age_days, max(0.0, (now - memory.last_accessed_at).total_seconds() / 86400))
    retention = decay.retention_for(memory.kind, age_days, memory.access_count,
                                    memory.importance, trust)
    score = fusion.final_score(
        relevance,
        trust_mod.weight(memory.trust_alpha, memory.trust_beta),
        decay.rank_factor(retention, min(1.0, relevance)),
    )
    return Hit(memory, score, relevance, dict(ranks), trust, retention)


def _add_neighbours(store: MemoryStore, where: str, rows: dict[str, Memory],
                    relevance: dict[str, float], ranks: dict[str, dict[str, int]]) -> None:
    """Neighbours in time of the strongest hits (same session or commit) share their score."""
    seeds = [m for m in sorted(rows.values(), key=lambda m: -relevance[m.id])[:NEIGHBOUR_SEEDS]
             if m.session or m.commit_sha]
    for seed in seeds:
        key, value = ("session", seed.session) if seed.session else ("commit_sha", seed.commit_sha)
        group = store.table.rows(f"({where}) AND {key} = {sql_str(str(value))}", limit=500)
        group.sort(key=lambda m: m.id)  # ids are time-ordered: ingest order within the group
        idx = next((n for n, m in enumerate(group) if m.id == seed.id), None)
        if idx is None:
            continue
        for n in (idx - 1, idx + 1):
            if 0 <= n < len(group):
                nb = group[n]
                share = NEIGHBOUR_SHARE * relevance[seed.id]
                if share > relevance.get(nb.id, 0.0):
                    relevance[nb.id] = share
                    ranks.setdefault(nb.id, {})
                rows.setdefault(nb.id, nb)


def _reinforce(store: MemoryStore, ids: list[str], now: datetime) -> None:
    # Best effort: the recall already succeeded; a failed counter update must not fail it.
    with contextlib.suppress(Exception):
        store.update(ids, values_sql={
            "access_count": "access_count + 1",
            "last_accessed_at": f"CAST('{now.strftime('%Y-%m-%dT%H:%M:%S')}' AS TIMESTAMP)",
        })
