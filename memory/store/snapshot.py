"""An in-process, read-only snapshot of a table version: every column but the vectors.

Recall used to run several filtered LanceDB scans after its channels (visibility, session
neighbours, the final rows), each O(table) plus a fixed overhead. The snapshot holds the
light columns (and, while the table is small enough to be searched flat, the vectors) in
memory: the ones recall filters and ranks on as arrays, so visibility, neighbours and exact
cosine search are numpy work, and the rest as Arrow, so the final rows are an in-memory take.
(A Lance take of ten rows costs 5-20 ms of fixed overhead, more than the whole ranking; the
light columns of 100,000 memories hold tens of MB.)

Freshness: every `current()` reads the table's latest version (cheap: a directory read) and
reloads when it moved, so a write acknowledged by any process before a recall starts is seen
by it. Reloads are incremental: Lance fragments are immutable apart from their deletion
vectors, so only new fragments are read, and a fragment with new deletions is trimmed by its
live row addresses.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from memory.record import SCHEMA
from memory.store.table import LIGHT_COLUMNS, VANISHED, MemoryTable

# What ranking reads of each candidate (kind, times in UTC microseconds, use and trust).
SCORE_FIELDS = ["id", "kind", "valid_from", "last_accessed_at", "access_count", "importance",
                "trust_alpha", "trust_beta"]
ADDR = "_rowaddr"
# Up to this many rows recall searches the snapshot's vectors exactly, in NumPy (14 ms at
# 100,000 rows on one core, 27 ms at 200,000); LanceDB's ANN index with the exact re-ranking
# recall needs took 65 ms at 100,000. The vectors cost 1.5 KB a row in memory.
FLAT_MAX_ROWS = int(os.environ.get("MEMCTL_FLAT_MAX_ROWS", "150000"))


@dataclass(frozen=True)
class Block:
    """One fragment's unit vectors as read (zero rows stay zero), and which of them are still
    live. Deletions narrow `live` instead of copying the matrix: a usage-count flush deletes
    a few rows from fragments holding up to the whole table."""

    matrix: np.ndarray  # float32 [rows read, dim]
    live: np.ndarray | None = None  # indices into `matrix`; None: every row

    def __len__(self) -> int:
        return len(self.matrix) if self.live is None else len(self.live)

    def products(self, q: np.ndarray) -> np.ndarray:
        sims = self.matrix @ q
        return sims if self.live is None else sims[self.live]

    def rows(self, index: np.ndarray) -> np.ndarray:
        return self.matrix[index if self.live is None else self.live[index]]

    def keep(self, mask: np.ndarray) -> Block:
        return Block(self.matrix, np.flatnonzero(mask) if self.live is None else self.live[mask])


@dataclass
class _Fragment:
    """What was read of one Lance fragment: its live rows then, in address order."""

    files: tuple[str, ...]
    deletions: str
    meta: pa.Table  # LIGHT_COLUMNS + _rowaddr
    vectors: Block | None


def _signature(fragment: object) -> tuple[tuple[str, ...], str]:
    md = fragment.metadata  # type: ignore[attr-defined]
    return tuple(f.path for f in md.files), repr(md.deletion_file)


def _codes(column: pa.ChunkedArray) -> tuple[np.ndarray, list[str | None]]:
    """Dictionary codes (-1 for null) and the dictionary."""
    enc = pc.dictionary_encode(column).combine_chunks()
    codes = enc.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int32)
    return codes, enc.dictionary.to_pylist()


@dataclass(frozen=True)
class Filter:
    """Recall's visibility rule in arrays; the same rule as its LanceDB where-clause."""

    project: str
    include_superseded: bool = False
    kinds: Sequence[str] | None = None  # None: any kind
    # Half-open [start, end) bounds on valid_from in UTC microseconds; None: unbounded.
    bounds: Sequence[tuple[int | None, int | None]] = ()


@dataclass
class Snapshot:
    version: int
    dataset: object  # lance.LanceDataset pinned at `version`
    ids: list[str]
    index: dict[str, int]
    project: np.ndarray
    projects: list[str | None]
    session: np.ndarray
    status: np.ndarray
    statuses: list[str | None]
    kind: np.ndarray
    kinds: list[str | None]
    superseded: np.ndarray  # bool
    valid_from: np.ndarray  # int64 UTC microseconds
    last_accessed: np.ndarray  # int64 UTC microseconds, -1 where never accessed
    accessed: np.ndarray  # bool: last_accessed holds a time
    access_count: np.ndarray
    importance: np.ndarray  # float32, as stored
    trust_alpha: np.ndarray
    trust_beta: np.ndarray
    # Per fragment, shared with the cache (one copy in memory); only while searched flat.
    vectors: list[Block] | None
    rows: pa.Table  # LIGHT_COLUMNS, in snapshot order
    _masks: dict[Filter, np.ndarray] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.ids)

    def mask(self, f: Filter) -> np.ndarray:
        cached = self._masks.get(f)
        if cached is not None:
            return cached
        m = self.project == _code(self.projects, f.project)
        m &= self.status == _code(self.statuses, "active")
        if not f.include_superseded:
            m &= ~self.superseded
        if f.kinds is not None:
            m &= np.isin(self.kind, [_code(self.kinds, k) for k in f.kinds])
        for start, end in f.bounds:
            if start is not None:
                m &= self.valid_from >= start
            if end is not None:
                m &= self.valid_from < end
        if len(self._masks) < 16:  # a recall asks for one or two filters
            self._masks[f] = m
        return m

    def positions(self, ids: Sequence[str]) -> list[int]:
        """Snapshot positions of the `ids` it holds (others are dropped)."""
        return [p for p in (self.index.get(i) for i in ids) if p is not None]

    def visible(self, ids: Sequence[str], f: Filter) -> list[str]:
        m = self.mask(f)
        return [self.ids[p] for p in self.positions(ids) if m[p]]

    def session_neighbours(self, ids: Sequence[str], f: Filter, max_rows: int
                           ) -> dict[str, list[str]]:
        """Previous and next visible memory by id (i.e. by creation) in each session of the
        visible `ids`; sessions are taken until `max_rows` members."""
        m = self.mask(f)
        pos = [p for p in self.positions(ids) if m[p] and self.session[p] >= 0]
        if not pos:
            return {}
        wanted = np.unique(self.session[pos])
        members = np.flatnonzero(m & np.isin(self.session, wanted))
        groups: dict[int, list[str]] = {}
        for p in members[:max_rows].tolist():
            groups.setdefault(int(self.session[p]), []).append(self.ids[p])
        out: dict[str, list[str]] = {}
        for group in groups.values():
            group.sort()
            for n, doc_id in enumerate(group):
                out[doc_id] = [group[j] for j in (n - 1, n + 1) if 0 <= j < len(group)]
        return out

    def nearest(self, vector: np.ndarray, f: Filter, limit: int) -> list[tuple[str, float]]:
        """Exact cosine top `limit` among visible rows (the flat search LanceDB would do)."""
        assert self.vectors is not None
        cand = np.flatnonzero(self.mask(f))
        if limit <= 0 or not len(cand):
            return []
        q = np.asarray(vector, dtype=np.float32)
        norm = float(np.linalg.norm(q))
        if norm > 0:
            q = q / norm
        # One product per fragment over all its rows: no gathered copy of the vectors.
        sims = np.concatenate([b.products(q) for b in self.vectors]) if self.vectors \
            else np.zeros(0, np.float32)
        sims = sims[cand]
        if len(cand) > limit:
            top = np.argpartition(-sims, limit - 1)[:limit]
            cand, sims = cand[top], sims[top]
        order = np.lexsort((cand, -sims))
        return [(self.ids[int(cand[i])], float(sims[i])) for i in order]

    def score_fields(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        """SCORE_FIELDS of the `ids` the snapshot holds, as the table's rows would give them
        (float32 values widened exactly, times as microseconds, None where null)."""
        pos = np.asarray(self.positions(ids), dtype=np.int64)
        accessed = self.accessed[pos].tolist()
        cols = zip([self.ids[p] for p in pos.tolist()],
                   [self.kinds[c] for c in self.kind[pos].tolist()],
                   self.valid_from[pos].tolist(),
                   [t if a else None for t, a in zip(self.last_accessed[pos].tolist(), accessed,
                                                     strict=True)],
                   self.access_count[pos].tolist(), self.importance[pos].tolist(),
                   self.trust_alpha[pos].tolist(), self.trust_beta[pos].tolist(), strict=True)
        return [dict(zip(SCORE_FIELDS, row, strict=True)) for row in cols]

    def take(self, ids: Sequence[str], columns: Sequence[str]) -> pa.Table:
        """Rows of `ids` (those the snapshot holds), in that order, as of its version."""
        rows = self.rows.select(list(columns))
        # Row slices, not Table.take: a take over a many-chunk table (one chunk per fragment)
        # first concatenates whole columns, a copy of the table per recall.
        return pa.concat_tables([rows.slice(p, 1) for p in self.positions(ids)]
                                or [rows.slice(0, 0)])


def _code(dictionary: list[str | None], value: str) -> int:
    try:
        return dictionary.index(value)
    except ValueError:
        return -2  # matches no row (nulls are -1)


def _unit_vectors(column: pa.ChunkedArray) -> np.ndarray:
    """A fixed-size-list vector column as float32 unit rows (a null or zero vector: zeros)."""
    v = column.combine_chunks()
    dim = v.type.list_size
    # values, not flatten(): a null vector keeps its slot, so rows stay aligned.
    vals = v.values.slice(v.offset * dim, len(v) * dim)
    vecs = vals.to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, dim)
    norms = np.linalg.norm(vecs, axis=1, keepdims=True)
    return np.divide(vecs, norms, out=np.zeros_like(vecs), where=norms > 0)


def _known_vectors(snap: Snapshot | None, ids: list[str]) -> np.ndarray | None:
    """The unit vectors of `ids` gathered from `snap`, or None unless it holds them all."""
    if snap is None or not snap.vectors:
        return None
    pos = [snap.index.get(i) for i in ids]
    if None in pos:
        return None
    out = np.empty((len(ids), snap.vectors[0].matrix.shape[1]), np.float32)
    if not ids:
        return out
    where = np.asarray(pos, dtype=np.int64)
    starts = np.cumsum([0] + [len(b) for b in snap.vectors])
    part = np.searchsorted(starts, where, side="right") - 1
    for k in np.unique(part).tolist():
        sel = part == k
        out[sel] = snap.vectors[k].rows(where[sel] - starts[k])
    return out


class SnapshotCache:
    """The latest snapshot of one table; thread-safe, rebuilt only when the version moves."""

    def __init__(self, table: MemoryTable, flat_max_rows: int) -> None:
        self.table = table
        self.flat_max_rows = flat_max_rows
        self._lock = threading.Lock()
        self._snap: Snapshot | None = None
        self._fragments: dict[int, _Fragment] = {}
        self.reloads = 0
        self.vector_rows_read = 0  # vectors read from disk rather than reused

    def current(self) -> Snapshot:
        snap = self._snap
        if snap is not None and self._latest(snap) == snap.version:
            return snap
        with self._lock:
            snap = self._snap
            if snap is None or self._latest(snap) != snap.version:
                snap = self._load()
            return snap

    def _latest(self, snap: Snapshot) -> int:
        """The latest committed version, as stored (any process's commit counts). Asked of
        the pinned dataset: a directory read, ten times cheaper than through LanceDB."""
        try:
            return int(snap.dataset.latest_version)  # type: ignore[attr-defined]
        except Exception:  # e.g. files gone under a hard erase: ask the table
            return self.table.version()

    def invalidate(self) -> None:
        with self._lock:
            self._snap = None

    def take(self, ids: Sequence[str], columns: Sequence[str],
             snap: Snapshot | None = None) -> pa.Table:
        """`Snapshot.take` on `snap`, or on the latest snapshot."""
        return (snap or self.current()).take(ids, columns)

    # -- loading --------------------------------------------------------------------------
    def _load(self) -> Snapshot:
        # A hard erase elsewhere drops old versions' files, possibly under a load that began
        # on one of them: the latest version then has them all.
        for attempt in range(3):
            try:
                return self._load_latest()
            except (RuntimeError, OSError, ValueError) as exc:
                if VANISHED not in str(exc) or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _load_latest(self) -> Snapshot:
        ds = self.table.dataset()
        version = int(ds.version)
        fragments = ds.get_fragments()
        rows = sum(f.metadata.physical_rows for f in fragments)  # deleted ones too: a bound
        flat = rows < self.flat_max_rows
        # Vectors come from the previous snapshot where it has them: an update or a
        # compaction rewrites rows into new fragments, but a memory's vector never changes.
        known = self._snap if flat else None
        kept: dict[int, _Fragment] = {}
        live: np.ndarray | None = None  # every live row address, read once if needed
        for frag in fragments:
            files, deletions = _signature(frag)
            old = self._fragments.get(frag.fragment_id)
            if old is None or old.files != files or (flat and old.vectors is None):
                kept[frag.fragment_id] = self._read(frag, files, deletions, flat, known)
                continue
            if old.deletions != deletions:
                # Deletions only grow within a fragment: keep the rows still live. (An update
                # of a few rows touches many fragments: one address scan serves them all.)
                if live is None:
                    live = ds.to_table(columns=[], with_row_address=True).column(
                        ADDR).to_numpy().astype(np.uint64)
                mine = live[(live >> np.uint64(32)) == np.uint64(frag.fragment_id)]
                keep = np.isin(old.meta.column(ADDR).to_numpy().astype(np.uint64), mine)
                if int(keep.sum()) != len(mine):  # not a subset after all: read it again
                    kept[frag.fragment_id] = self._read(frag, files, deletions, flat, known)
                    continue
                vecs = old.vectors.keep(keep) if old.vectors is not None else None
                old = _Fragment(files, deletions, old.meta.filter(pa.array(keep)), vecs)
            kept[frag.fragment_id] = old if flat else _Fragment(old.files, old.deletions,
                                                                 old.meta, None)
        self._fragments = kept
        snap = self._build(ds, version, [kept[f.fragment_id] for f in fragments], flat)
        self._snap = snap
        self.reloads += 1
        return snap

    def _read(self, frag: Any, files: tuple[str, ...], deletions: str, flat: bool,
              known: Snapshot | None) -> _Fragment:
        # With no vectors to reuse (a cold load), they come in the same scan as the rest.
        reuse = flat and known is not None and bool(known.vectors)
        together = flat and not reuse
        t = frag.to_table(columns=[*LIGHT_COLUMNS, "vector"] if together else LIGHT_COLUMNS,
                          with_row_address=True)
        if not flat:
            return _Fragment(files, deletions, t, None)
        vecs = _known_vectors(known, t.column("id").to_pylist()) if reuse else None
        if vecs is None:
            # Else the same pinned fragment again: its rows come back in the same order.
            column = t.column("vector") if together else \
                frag.to_table(columns=["vector"]).column("vector")
            vecs = _unit_vectors(column)
            self.vector_rows_read += len(vecs)
        if together:
            t = t.drop_columns(["vector"])
        return _Fragment(files, deletions, t, Block(vecs))

    @staticmethod
    def _build(ds: object, version: int, frags: list[_Fragment], flat: bool) -> Snapshot:
        if frags:
            meta = pa.concat_tables([f.meta for f in frags])
        else:
            meta = SCHEMA.empty_table().select(LIGHT_COLUMNS)
        ids = meta.column("id").to_pylist()
        project, projects = _codes(meta.column("project"))
        session, _ = _codes(meta.column("session"))
        status, statuses = _codes(meta.column("status"))
        kind, kinds = _codes(meta.column("kind"))
        superseded = meta.column("superseded_by").is_valid().to_numpy(zero_copy_only=False)
        valid_from = pc.cast(meta.column("valid_from"), pa.int64()).to_numpy()
        last = pc.cast(meta.column("last_accessed_at"), pa.int64())
        accessed = np.asarray(last.is_valid().to_numpy(zero_copy_only=False), dtype=bool)

        def numbers(name: str, dtype: type, default: float) -> np.ndarray:
            # Nulls only in a hand-made table: the record's defaults stand in.
            return meta.column(name).fill_null(default).to_numpy().astype(dtype)
        vectors = [f.vectors for f in frags if f.vectors is not None] if flat else None
        index = dict(zip(ids, range(len(ids)), strict=True))  # twice a dict comprehension's speed
        return Snapshot(version, ds, ids, index, project,
                        projects, session, status, statuses, kind, kinds,
                        np.asarray(superseded, dtype=bool), np.asarray(valid_from, np.int64),
                        last.fill_null(-1).to_numpy().astype(np.int64), accessed,
                        numbers("access_count", np.int64, 0),
                        numbers("importance", np.float32, 0.5),
                        numbers("trust_alpha", np.float32, 1.0),
                        numbers("trust_beta", np.float32, 1.0),
                        vectors, meta.select(LIGHT_COLUMNS))
