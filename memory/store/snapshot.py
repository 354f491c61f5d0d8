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
live row addresses. Each fragment keeps its own arrays; a snapshot's are their concatenation,
so a reload after a small write costs numpy copies, not Python work per row.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
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
# From this many rows the scan goes through a smaller copy first: each vector projected on
# the table's top REDUCED_DIM principal directions (a 4x smaller scan), and only the best
# PREFILTER_SHARE of rows (at least 10x the limit) are scored exactly. Measured on 20,000
# embedded synthetic memories: recall@150 against the exact scan 0.999 with 96 directions and
# 2% of rows (0.973 with 64), recall@10 1.000; `bench latency` reports it at each size.
PREFILTER_MIN_ROWS = int(os.environ.get("MEMCTL_PREFILTER_MIN_ROWS", "20000"))
REDUCED_DIM = 96
PREFILTER_SHARE = 0.02
BASIS_SAMPLE = 5_000


@dataclass(frozen=True)
class Block:
    """One fragment's unit vectors as read (zero rows stay zero), and which of them are still
    live. Deletions narrow `live` instead of copying the matrix: a usage-count flush deletes
    a few rows from fragments holding up to the whole table."""

    matrix: np.ndarray  # float32 [rows read, dim]
    live: np.ndarray | None = None  # indices into `matrix`; None: every row
    # (matrix @ basis).T, C-contiguous, when the snapshot prefilters: a product with the
    # rows as columns streams long runs (1.7x faster than 96-long dot products per row).
    reduced: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.matrix) if self.live is None else len(self.live)

    def products(self, q: np.ndarray) -> np.ndarray:
        return self._of_live(self.matrix @ q)

    def approximate(self, q_reduced: np.ndarray) -> np.ndarray:
        assert self.reduced is not None
        return self._of_live(q_reduced @ self.reduced)

    def _of_live(self, sims: np.ndarray) -> np.ndarray:
        return sims if self.live is None else sims[self.live]

    def rows(self, index: np.ndarray) -> np.ndarray:
        return self.matrix[index if self.live is None else self.live[index]]


class _Codes:
    """A column's values as integer codes shared by every fragment (nulls are -1). Codes are
    only ever added, so arrays from any snapshot compare against the same dictionary."""

    def __init__(self) -> None:
        self.values: list[str | None] = []
        self._code: dict[str | None, int] = {}

    def code(self, value: str) -> int:
        return self._code.get(value, -2)  # -2 matches no row

    def encode(self, column: pa.ChunkedArray) -> np.ndarray:
        enc = pc.dictionary_encode(column).combine_chunks()
        lut = []
        for value in enc.dictionary.to_pylist():
            code = self._code.get(value)
            if code is None:
                code = self._code[value] = len(self.values)
                self.values.append(value)
            lut.append(code)
        local = enc.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        return np.asarray([*lut, -1], dtype=np.int32)[local]  # local -1 picks the last: null


CODED = ("project", "session", "status", "kind")


@dataclass(frozen=True)
class _Fragment:
    """What was read of one Lance fragment (its rows live then, in address order), with
    recall's arrays of those rows, and which of them are still live. `serial` names this
    read: a fragment read again is a new read, so no stale row number can point into it."""

    serial: int
    files: tuple[str, ...]
    deletions: str
    meta: pa.Table  # LIGHT_COLUMNS + _rowaddr
    ids: np.ndarray  # object: str
    arrays: dict[str, np.ndarray]
    vectors: np.ndarray | None  # unit rows, only while searched flat
    live: np.ndarray | None = None  # indices of the rows still live; None: every row
    reduced: tuple[np.ndarray, np.ndarray] | None = None  # (basis, Block.reduced)

    def __len__(self) -> int:
        return len(self.ids) if self.live is None else len(self.live)

    def column(self, name: str) -> np.ndarray:
        a = self.ids if name == "id" else self.arrays[name]
        return a if self.live is None else a[self.live]

    def narrowed(self, keep: np.ndarray, deletions: str) -> _Fragment:
        """Keep the live rows where `keep` (over the live rows) is true."""
        live = np.flatnonzero(keep) if self.live is None else self.live[keep]
        return replace(self, deletions=deletions, live=live)

    def slots(self, start: int) -> np.ndarray:
        """Snapshot position of each row as read, -1 for the rows no longer live."""
        if self.live is None:
            return np.arange(start, start + len(self.ids), dtype=np.int64)
        out = np.full(len(self.ids), -1, dtype=np.int64)
        out[self.live] = np.arange(start, start + len(self.live), dtype=np.int64)
        return out


class _SlotMap:
    """`_Fragment.slots` of each read a snapshot holds, as one array: a lookup of many ids
    is a few numpy operations, not one per fragment."""

    def __init__(self, slots: dict[int, np.ndarray]) -> None:
        self.serials = np.asarray(sorted(slots), dtype=np.int64)
        sizes = [len(slots[s]) for s in self.serials.tolist()]
        self.base = np.cumsum([0, *sizes[:-1]], dtype=np.int64)
        self.flat = np.concatenate([slots[s] for s in self.serials.tolist()]) if sizes \
            else np.zeros(0, np.int64)

    def positions(self, serial: np.ndarray, row: np.ndarray, found: np.ndarray) -> np.ndarray:
        """Snapshot position of each (read, row as read), -1 where the read is not held
        (or `found` is false) or the row is no longer live."""
        if not len(self.serials):
            return np.full(len(serial), -1, dtype=np.int64)
        at = np.minimum(np.searchsorted(self.serials, serial), len(self.serials) - 1)
        held = found & (self.serials[at] == serial)
        # A row as read is always within its read's slots.
        return np.where(held, self.flat[np.where(held, self.base[at] + row, 0)], -1)


def _signature(fragment: object) -> tuple[tuple[str, ...], str]:
    md = fragment.metadata  # type: ignore[attr-defined]
    return tuple(f.path for f in md.files), repr(md.deletion_file)


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
    codes: dict[str, _Codes]  # for the CODED columns
    project: np.ndarray
    session: np.ndarray
    status: np.ndarray
    kind: np.ndarray
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
    basis: np.ndarray | None  # [dim, REDUCED_DIM] when every block has its reduced copy
    _fragments: dict[int, _Fragment]  # by serial
    _slots: _SlotMap  # by serial: `_Fragment.slots` at its place here
    # id -> serial << 32 | row as read. It may also hold ids gone since, or rows since
    # moved: a lookup checks that the row is live here (a row as read is always one id).
    _where: dict[str, int]
    _masks: dict[Filter, np.ndarray] = field(default_factory=dict, repr=False)
    # The last query's reduced similarities over every row: the temporal channel searches
    # the same query vector as the semantic one, within a window.
    _approx: tuple[bytes, np.ndarray] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.ids)

    def mask(self, f: Filter) -> np.ndarray:
        cached = self._masks.get(f)
        if cached is not None:
            return cached
        m = self.project == self.codes["project"].code(f.project)
        m &= self.status == self.codes["status"].code("active")
        if not f.include_superseded:
            m &= ~self.superseded
        if f.kinds is not None:
            m &= np.isin(self.kind, [self.codes["kind"].code(k) for k in f.kinds])
        for start, end in f.bounds:
            if start is not None:
                m &= self.valid_from >= start
            if end is not None:
                m &= self.valid_from < end
        if len(self._masks) < 16:  # a recall asks for one or two filters
            self._masks[f] = m
        return m

    def _locate(self, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per id: its position here (-1 if not held), and its fragment read and row in it.

        An id's entry names the read that last held it live. The row is live here only if
        this snapshot has that read and the row's slot is set; an id gone since, or moved to
        a read this snapshot does not have, is not held."""
        keys = np.fromiter(map(self._where.get, ids, itertools.repeat(-1)), np.int64, len(ids))
        serial, row = keys >> 32, keys & 0xFFFFFFFF
        return self._slots.positions(serial, row, keys >= 0), serial, row

    def position(self, memory_id: str) -> int | None:
        p = int(self._locate([memory_id])[0][0])
        return p if p >= 0 else None

    def positions(self, ids: Sequence[str]) -> np.ndarray:
        """Snapshot positions of the `ids` it holds (others are dropped)."""
        pos = self._locate(ids)[0]
        return pos[pos >= 0]

    def visible(self, ids: Sequence[str], f: Filter) -> list[str]:
        pos = self.positions(ids)
        return [self.ids[p] for p in pos[self.mask(f)[pos]].tolist()]

    def session_neighbours(self, ids: Sequence[str], f: Filter, max_rows: int
                           ) -> dict[str, list[str]]:
        """Previous and next visible memory by id (i.e. by creation) in each session of the
        visible `ids`; sessions are taken until `max_rows` members."""
        m = self.mask(f)
        pos = self.positions(ids)
        pos = pos[m[pos] & (self.session[pos] >= 0)]
        if not len(pos):
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

    def nearest(self, vector: np.ndarray, f: Filter, limit: int, exact: bool = False
                ) -> list[tuple[str, float]]:
        """Cosine top `limit` among visible rows, by exact similarity. With a basis (a large
        table) and not `exact`, only the rows that the reduced vectors put first are scored:
        the same answer as the full scan but for the rare true neighbour the prefilter
        misses."""
        assert self.vectors is not None
        cand = np.flatnonzero(self.mask(f))
        if limit <= 0 or not len(cand):
            return []
        q = np.asarray(vector, dtype=np.float32)
        norm = float(np.linalg.norm(q))
        if norm > 0:
            q = q / norm
        pool = max(10 * limit, int(PREFILTER_SHARE * len(self)))
        if self.basis is not None and not exact and len(cand) > pool:
            approx = self._approximate(q)
            if len(cand) < len(approx):
                approx = approx[cand]
            cand = cand[_largest(approx, pool)]
            sims = self._products(cand, q)
        else:
            # One product per fragment over all its rows: no gathered copy of the vectors.
            sims = np.concatenate([b.products(q) for b in self.vectors]) if self.vectors \
                else np.zeros(0, np.float32)
            sims = sims[cand]
        if len(cand) > limit:
            top = np.argpartition(-sims, limit - 1)[:limit]
            cand, sims = cand[top], sims[top]
        order = np.lexsort((cand, -sims))
        ids = self.ids
        return list(zip([ids[c] for c in cand[order].tolist()], sims[order].tolist(),
                        strict=True))

    def _approximate(self, q: np.ndarray) -> np.ndarray:
        """Reduced similarity of every row to the unit vector `q` (read-only)."""
        assert self.vectors is not None and self.basis is not None
        key = q.tobytes()
        last = self._approx  # one read: another thread may replace it meanwhile
        if last is not None and last[0] == key:
            return last[1]
        q_reduced = q @ self.basis
        approx = np.concatenate([b.approximate(q_reduced) for b in self.vectors])
        approx.flags.writeable = False
        self._approx = (key, approx)
        return approx

    def _products(self, positions: np.ndarray, q: np.ndarray) -> np.ndarray:
        """Exact similarities of the rows at `positions` (gathered block by block)."""
        assert self.vectors is not None
        starts = np.cumsum([0] + [len(b) for b in self.vectors])
        order = np.argsort(positions, kind="stable")
        ordered = positions[order]
        # Sorted, each block's positions are one run: [bounds[k], bounds[k + 1]).
        bounds = np.searchsorted(ordered, starts).tolist()
        out = np.empty(len(positions), np.float32)
        for k, block in enumerate(self.vectors):
            lo, hi = bounds[k], bounds[k + 1]
            if lo < hi:
                out[order[lo:hi]] = block.rows(ordered[lo:hi] - starts[k]) @ q
        return out

    def vectors_of(self, ids: Sequence[str]) -> np.ndarray | None:
        """The unit vectors of `ids`, or None unless this snapshot holds them all."""
        pos, serial, row = self._locate(ids)
        if not self.vectors or (pos < 0).any():
            return None
        out = np.empty((len(ids), self.vectors[0].matrix.shape[1]), np.float32)
        for s in np.unique(serial).tolist():
            vecs = self._fragments[s].vectors
            if vecs is None:
                return None
            sel = serial == s
            out[sel] = vecs[row[sel]]
        return out

    def score_fields(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        """SCORE_FIELDS of the `ids` the snapshot holds, as the table's rows would give them
        (float32 values widened exactly, times as microseconds, None where null)."""
        pos = self.positions(ids)
        accessed = self.accessed[pos].tolist()
        kinds = self.codes["kind"].values
        cols = zip([self.ids[p] for p in pos.tolist()],
                   [kinds[c] for c in self.kind[pos].tolist()],
                   self.valid_from[pos].tolist(),
                   [t if a else None for t, a in zip(self.last_accessed[pos].tolist(), accessed,
                                                     strict=True)],
                   self.access_count[pos].tolist(), self.importance[pos].tolist(),
                   self.trust_alpha[pos].tolist(), self.trust_beta[pos].tolist(), strict=True)
        return [dict(zip(SCORE_FIELDS, row, strict=True)) for row in cols]

    def take(self, ids: Sequence[str], columns: Sequence[str]) -> pa.Table:
        """Rows of `ids` (those the snapshot holds), in that order, as of its version."""
        names = list(columns)
        pos, serial, row = self._locate(ids)
        held = pos >= 0
        if not held.any():
            return SCHEMA.empty_table().select(names)
        # One-row slices of the fragments as read: no copy of the table per recall. Joined
        # as one chunk: converting ten one-row chunks to Python costs twice as much.
        batches = [b for s, r in zip(serial[held].tolist(), row[held].tolist(), strict=True)
                   for b in self._fragments[s].meta.slice(r, 1).to_batches()]
        return pa.Table.from_batches(batches).select(names).combine_chunks()


def _largest(values: np.ndarray, n: int, stride: int = 8) -> np.ndarray:
    """Indices of the `n` largest `values` (any order), as argpartition would pick them,
    about 3x faster on 100,000 values: a threshold from a strided sample keeps a few more
    than `n`, and only those are partitioned."""
    if n >= len(values):
        return np.arange(len(values))
    sample = values[::stride]
    keep = min(len(sample), n // stride + n // (2 * stride) + 1)  # 1.5x the share expected
    threshold = np.partition(sample, len(sample) - keep)[len(sample) - keep]
    above = np.flatnonzero(values >= threshold)
    if len(above) < n:  # the sample was unlucky: a full partition
        return np.argpartition(values, len(values) - n)[len(values) - n:]
    return above[np.argpartition(values[above], len(above) - n)[len(above) - n:]]


def _principal_basis(frags: list[_Fragment], total: int) -> np.ndarray:
    """The top REDUCED_DIM principal directions of a sample of the live vectors: projected
    on them, vectors keep most of what tells neighbours apart (sentence embeddings share a
    large common component, which the centring drops)."""
    rng = np.random.default_rng(0)  # the same table gives the same basis
    rows = []
    for f in frags:
        assert f.vectors is not None
        idx = np.arange(len(f.vectors)) if f.live is None else f.live
        k = min(len(idx), int(np.ceil(len(idx) * BASIS_SAMPLE / max(total, 1))))
        if k:
            rows.append(f.vectors[np.sort(rng.choice(idx, k, replace=False))])
    sample = np.concatenate(rows)
    _, _, vt = np.linalg.svd(sample - sample.mean(axis=0), full_matrices=False)
    return np.ascontiguousarray(vt[:REDUCED_DIM].T, dtype=np.float32)


def _unit_vectors(column: pa.ChunkedArray) -> np.ndarray:
    """A fixed-size-list vector column as float32 unit rows (a null or zero vector: zeros)."""
    v = column.combine_chunks()
    dim = v.type.list_size
    # values, not flatten(): a null vector keeps its slot, so rows stay aligned.
    vals = v.values.slice(v.offset * dim, len(v) * dim)
    vecs = vals.to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, dim)
    norms = np.linalg.norm(vecs, axis=1, keepdims=True)
    return np.divide(vecs, norms, out=np.zeros_like(vecs), where=norms > 0)


class SnapshotCache:
    """The latest snapshot of one table; thread-safe, rebuilt only when the version moves.

    A reload reads only new fragments and narrows the others by their new deletions; the
    snapshot's arrays are then concatenations of per-fragment arrays (numpy, not Python)."""

    def __init__(self, table: MemoryTable, flat_max_rows: int) -> None:
        self.table = table
        self.flat_max_rows = flat_max_rows
        self._lock = threading.Lock()
        self._snap: Snapshot | None = None
        self._fragments: dict[int, _Fragment] = {}  # by Lance fragment id
        self._where: dict[str, int] = {}
        self._codes = {name: _Codes() for name in CODED}
        self._serials = itertools.count(1)
        self._basis: np.ndarray | None = None  # for the prefilter; fitted on a large table
        self._basis_rows = 0
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
            self._fragments = {}
            self._where = {}
            self._basis = None

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
        # Live rows: every update (recall's access counts too) leaves a deleted copy behind,
        # and counting those tipped a 100,000-row table into LanceDB's search (10x slower).
        rows = sum(f.metadata.num_rows for f in fragments)
        flat = rows < self.flat_max_rows
        # Vectors come from the previous snapshot where it has them: an update or a
        # compaction rewrites rows into new fragments, but a memory's vector never changes.
        known = self._snap if flat else None
        kept: dict[int, _Fragment] = {}
        new: list[_Fragment] = []
        live: np.ndarray | None = None  # every live row address, read once if needed
        for frag in fragments:
            files, deletions = _signature(frag)
            old = self._fragments.get(frag.fragment_id)
            if old is not None and old.files == files and old.deletions != deletions:
                # Deletions only grow within a fragment: keep the rows still live. (An update
                # of a few rows touches many fragments: one address scan serves them all.)
                if live is None:
                    live = ds.to_table(columns=[], with_row_address=True).column(
                        ADDR).to_numpy().astype(np.uint64)
                mine = live[(live >> np.uint64(32)) == np.uint64(frag.fragment_id)]
                keep = np.isin(old.column(ADDR), mine)
                # Not a subset after all: read it again.
                old = old.narrowed(keep, deletions) if int(keep.sum()) == len(mine) else None
            if old is None or old.files != files or (flat and old.vectors is None):
                old = self._read(frag, files, deletions, flat, known)
                new.append(old)
            elif not flat and old.vectors is not None:
                old = replace(old, vectors=None, reduced=None)
            kept[frag.fragment_id] = old
        frags = self._with_reduced([kept[f.fragment_id] for f in fragments])
        kept = {f.fragment_id: r for f, r in zip(fragments, frags, strict=True)}
        self._fragments = kept
        self._where = self._register(new, frags)
        snap = self._build(ds, version, frags, flat)
        self._snap = snap
        self.reloads += 1
        return snap

    def _with_reduced(self, frags: list[_Fragment]) -> list[_Fragment]:
        """The fragments with their reduced vectors, once the table is large enough for the
        prefilter. The basis is fitted again each time the table doubles."""
        total = sum(map(len, frags))
        if total < PREFILTER_MIN_ROWS or any(f.vectors is None for f in frags):
            return frags
        if self._basis is None or total >= 2 * self._basis_rows:
            self._basis, self._basis_rows = _principal_basis(frags, total), total
        basis = self._basis
        return [f if f.reduced is not None and f.reduced[0] is basis else
                replace(f, reduced=(basis, np.ascontiguousarray(
                    (f.vectors @ basis).T)))  # type: ignore[operator]
                for f in frags]

    def _register(self, new: list[_Fragment], frags: list[_Fragment]) -> dict[str, int]:
        """The id map with the new reads' rows: a copy, as older snapshots may be in use."""
        if len(self._where) + sum(len(f.ids) for f in new) > 2 * sum(map(len, frags)) + 1024:
            where: dict[str, int] = {}  # erased ids make up half of it: rebuild from the live
            sources = frags
        elif new:
            where, sources = self._where.copy(), new
        else:
            return self._where
        for f in sources:
            rows = np.arange(len(f.ids)) if f.live is None else f.live
            where.update(zip(f.ids[rows].tolist(), ((f.serial << 32) + rows).tolist(),
                             strict=True))
        return where

    def _read(self, frag: Any, files: tuple[str, ...], deletions: str, flat: bool,
              known: Snapshot | None) -> _Fragment:
        # With no vectors to reuse (a cold load), they come in the same scan as the rest.
        reuse = flat and known is not None and bool(known.vectors)
        together = flat and not reuse
        t = frag.to_table(columns=[*LIGHT_COLUMNS, "vector"] if together else LIGHT_COLUMNS,
                          with_row_address=True)
        ids = t.column("id").to_numpy(zero_copy_only=False)
        vecs = None
        if flat:
            vecs = known.vectors_of(ids.tolist()) if reuse and known is not None else None
            if vecs is None:
                # Else the same pinned fragment again: its rows come back in the same order.
                column = t.column("vector") if together else \
                    frag.to_table(columns=["vector"]).column("vector")
                vecs = _unit_vectors(column)
                self.vector_rows_read += len(vecs)
        if together:
            t = t.drop_columns(["vector"])
        return _Fragment(next(self._serials), files, deletions, t, ids, self._arrays(t), vecs)

    def _arrays(self, t: pa.Table) -> dict[str, np.ndarray]:
        out = {name: self._codes[name].encode(t.column(name)) for name in CODED}

        def numbers(name: str, dtype: type, default: float) -> np.ndarray:
            # Nulls only in a hand-made table: the record's defaults stand in.
            return t.column(name).fill_null(default).to_numpy().astype(dtype)

        last = pc.cast(t.column("last_accessed_at"), pa.int64())
        out.update(
            superseded=np.asarray(t.column("superseded_by").is_valid().to_numpy(
                zero_copy_only=False), dtype=bool),
            valid_from=np.asarray(pc.cast(t.column("valid_from"), pa.int64()).to_numpy(),
                                  np.int64),
            last_accessed=last.fill_null(-1).to_numpy().astype(np.int64),
            accessed=np.asarray(last.is_valid().to_numpy(zero_copy_only=False), dtype=bool),
            access_count=numbers("access_count", np.int64, 0),
            importance=numbers("importance", np.float32, 0.5),
            trust_alpha=numbers("trust_alpha", np.float32, 1.0),
            trust_beta=numbers("trust_beta", np.float32, 1.0),
        )
        out[ADDR] = t.column(ADDR).to_numpy().astype(np.uint64)
        return out

    def _empty(self) -> _Fragment:
        t = SCHEMA.empty_table().select(LIGHT_COLUMNS).append_column(
            ADDR, pa.array([], pa.uint64()))
        return _Fragment(0, (), "", t, np.zeros(0, dtype=object), self._arrays(t), None)

    def _build(self, ds: object, version: int, frags: list[_Fragment], flat: bool
               ) -> Snapshot:
        parts = frags or [self._empty()]

        def cat(name: str) -> np.ndarray:
            return np.concatenate([f.column(name) for f in parts])

        slots: dict[int, np.ndarray] = {}
        start = 0
        for f in parts:
            slots[f.serial] = f.slots(start)
            start += len(f)
        vectors = [Block(f.vectors, f.live, f.reduced[1] if f.reduced else None)
                   for f in frags if f.vectors is not None] if flat else None
        basis = self._basis if frags and vectors is not None and all(
            f.reduced is not None and f.reduced[0] is self._basis for f in frags) else None
        return Snapshot(version, ds, cat("id").tolist(), self._codes, cat("project"),
                        cat("session"), cat("status"), cat("kind"), cat("superseded"),
                        cat("valid_from"), cat("last_accessed"), cat("accessed"),
                        cat("access_count"), cat("importance"), cat("trust_alpha"),
                        cat("trust_beta"), vectors, basis, {f.serial: f for f in parts},
                        _SlotMap(slots),
                        self._where)
