"""The LanceDB table of memories: the source of truth."""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa

from memory.record import COLUMN_DEFAULTS, SCHEMA, Memory, to_table
from memory.store.fast_import import skip_rest_client_init

T = TypeVar("T")
TABLE = "memories"
# Columns read for ranking and display; the vector is only read when asked for.
LIGHT_COLUMNS = [f.name for f in SCHEMA if f.name != "vector"]


# Vector index: built once a table holds this many rows. Below snapshot.FLAT_MAX_ROWS
# (150,000) recall and the near-duplicate search of a write scan the in-process snapshot's
# vectors instead, so the index is built ahead of that, not before: at 100,000 rows the
# build takes minutes of CPU (406 s measured), which a 2-core machine's ingest and recall
# would otherwise share. Measured with `memctl bench ann` (README): LanceDB's own flat search
# is ~80 ms at 25,000 rows, IVF-HNSW-SQ with exact re-ranking 15-25 ms at recall@10 >= 0.99.
ANN_MIN_ROWS = int(os.environ.get("MEMCTL_ANN_MIN_ROWS", "120000"))
# The index proposes refine × limit candidates that are re-ranked by exact distance: without
# it the 8-bit scalar quantisation loses 10-18% of the true top 10 at 25,000-100,000 rows.
ANN_REFINE = 5
VECTOR_INDEX = "vector_idx"
# Scalar indexes for recall's where-clause, made with the vector index: a prefiltered ANN
# search otherwise reads project and status of every row (at 100,000 rows: 15 of 49 ms).
FILTER_INDEXES = ("project", "status")
# Compaction adds new rows to the vector index as a delta, and every delta is searched on its
# own (at 100,000 rows, 9 deltas: 65 ms a search, 49 ms once merged). Past this many they
# are merged into one, in the background.
MAX_INDEX_DELTAS = 3

# A hard erase in another process removes old versions' files; a read planned against one
# of them fails with this, and succeeds once it re-reads the latest version.
VANISHED = "Not found"
# Compaction merges fragments under this many live rows into fragments of up to this many.
COMPACT_TARGET_ROWS = 32_768


def sql_str(value: str) -> str:
    """Quote a string literal for a LanceDB filter (ids and project keys are user input)."""
    return "'" + value.replace("'", "''") + "'"


def utc_naive(value: datetime) -> datetime:
    """UTC without tzinfo (a naive value is taken as UTC); a time beyond datetime's range
    after conversion is clamped."""
    if value.tzinfo is not None and value.utcoffset() is not None:
        try:
            value = value.astimezone(UTC)
        except OverflowError:
            value = datetime.min if value.year < 5000 else datetime.max
    return value.replace(tzinfo=None)


def timestamp_sql(value: datetime) -> str:
    """A UTC timestamp literal of the table's timestamp type. isoformat pads the year
    (strftime writes year 1 as '1', which LanceDB cannot parse)."""
    return f"CAST('{utc_naive(value).isoformat(timespec='microseconds')}' AS TIMESTAMP)"


def sql_in(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(sql_str(v) for v in values)})"


class MemoryTable:
    """The table through LanceDB for writes and queries, and through Lance directly for what
    opening the store and recall's snapshot need (schema, count, latest dataset).

    `import lancedb` costs about 0.45 s more CPU than `import lance`, and it lies on a cold MCP
    server's path to its first recall; so LanceDB is imported and connected on first use.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._uri = str(path / f"{TABLE}.lance")
        self._lancedb_table: Any = None
        self._open_lock = threading.Lock()
        if not Path(self._uri).exists():
            self.connect()  # create it (the caller holds the store's write lock)
        self.migrated: list[str] = []

    @property
    def _table(self) -> Any:
        """The LanceDB table (connected on first use)."""
        table = self._lancedb_table
        return table if table is not None else self.connect()

    def connect(self) -> Any:
        """The LanceDB table, connecting (and importing LanceDB) the first time."""
        with self._open_lock:
            if self._lancedb_table is None:
                skip_rest_client_init()
                import lancedb

                # interval 0: every read checks for a newer version, so writes of other
                # processes (other agents' servers) are visible at once.
                db = lancedb.connect(str(self._path), read_consistency_interval=timedelta(0))
                try:
                    self._lancedb_table = db.open_table(TABLE)
                except ValueError:  # created under the store's write lock: no race
                    self._lancedb_table = db.create_table(TABLE, schema=SCHEMA)
            return self._lancedb_table

    def _latest(self) -> Any:
        """The Lance dataset at its latest version, opened without LanceDB."""
        skip_rest_client_init()
        import lance

        return lance.dataset(self._uri)

    # -- schema ---------------------------------------------------------------------------
    def missing_columns(self) -> list[str]:
        have = set(self._read(self._latest).schema.names)
        return [f.name for f in SCHEMA if f.name not in have]

    def migrate(self) -> list[str]:
        """Add columns of newer schema versions to an existing table (caller holds the lock)."""
        added: list[str] = []
        for name in self.missing_columns():
            if name in COLUMN_DEFAULTS:
                self._table.add_columns({name: COLUMN_DEFAULTS[name]})
                # SQL literals come out as the narrowest type; align with the schema.
                want = SCHEMA.field(name).type
                if self._table.schema.field(name).type != want:
                    self._table.alter_columns({"path": name, "data_type": want})
            else:
                self._table.add_columns(SCHEMA.field(name))
            added.append(name)
        self.migrated = added
        return added

    # -- writes -------------------------------------------------------------------------
    def add(self, memories: Sequence[Memory]) -> None:
        if memories:
            self._table.add(to_table(list(memories)))

    def update(self, ids: Sequence[str], values: dict[str, Any] | None = None,
               values_sql: dict[str, str] | None = None) -> None:
        if ids:
            # LanceDB takes either literal values or SQL expressions in one call, not both.
            if values:
                self._table.update(where=sql_in("id", ids), values=values)
            if values_sql:
                self._table.update(where=sql_in("id", ids), values_sql=values_sql)

    def delete(self, ids: Sequence[str]) -> None:
        if ids:
            self._table.delete(sql_in("id", ids))

    def small_fragments(self) -> int:
        """Fragments under compaction's target size, from the manifest: a few ms where
        LanceDB's `stats()` scans and takes 0.4 s at 100,000 rows."""
        return sum(f.metadata.num_rows < COMPACT_TARGET_ROWS
                   for f in self.dataset().get_fragments())

    def compact(self) -> None:
        """Merge small fragments into ones of up to COMPACT_TARGET_ROWS; keep an hour of old
        versions for readers still on them; add new rows to the vector index, if any.

        Lance's own steps, not LanceDB's `optimize()`: that merges every fragment under a
        million rows, so each compaction rewrote the whole table (2.7 s and 300 MB of old
        version at 100,000 memories). Here a fragment at the target stays as it is unless
        deletions (updates leave deleted copies) pile up in it."""
        ds = self._table.to_lance()
        ds.optimize.compact_files(target_rows_per_fragment=COMPACT_TARGET_ROWS)
        self._table.checkout_latest()
        ds = self._table.to_lance()
        if ds.describe_indices():
            ds.optimize.optimize_indices()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds.cleanup_old_versions(older_than=timedelta(hours=1))
        self._table.checkout_latest()

    def purge_history(self) -> None:
        """Rewrite fragments holding deleted rows, then drop every old version, so that erased
        rows leave the files on disk. (`optimize()` alone keeps a fragment whose deleted share
        is under 10%, text included.) Other processes re-read the latest version on their
        next query."""
        ds = self._table.to_lance()
        ds.optimize.compact_files(materialize_deletions=True, materialize_deletions_threshold=0.0)
        self._table.checkout_latest()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the "cleanup_older_than=0" caution is the point
            self._table.optimize(cleanup_older_than=timedelta(0), delete_unverified=True)

    # -- vector index ---------------------------------------------------------------------
    def has_vector_index(self) -> bool:
        return self.vector_index_deltas() > 0

    def vector_index_deltas(self) -> int:
        """How many separately searched parts the vector index has (0: no index)."""
        return sum(len(i.segments) for i in self._read(lambda: self._latest().describe_indices())
                   if i.name == VECTOR_INDEX)

    def missing_filter_indexes(self) -> list[str]:
        names = {f for i in self._read(lambda: self._latest().describe_indices())
                 for f in i.field_names}
        return [c for c in FILTER_INDEXES if c not in names]

    def build_filter_indexes(self) -> None:
        from lancedb.index import Bitmap

        for column in self.missing_filter_indexes():
            self._table.create_index(column, config=Bitmap(), replace=True,
                                     name=f"{column}_idx")

    def merge_vector_index(self) -> None:
        """Fold the vector index's deltas into one (no retraining; seconds to a minute)."""
        deltas = self.vector_index_deltas()
        if deltas > 1:
            self._read(self._latest).optimize.optimize_indices(
                num_indices_to_merge=deltas, index_names=[VECTOR_INDEX])

    def build_vector_index(self) -> None:
        """Train and write the ANN index. Takes seconds to minutes; needs no write lock:
        Lance commits it as its own version and later appends are searched flat until
        `compact` (LanceDB's optimize) folds them into the index."""
        from lancedb.index import HnswSq

        self._table.create_index("vector", config=HnswSq(distance_type="cosine"),
                                 replace=True, name=VECTOR_INDEX)
        self.build_filter_indexes()

    # -- reads --------------------------------------------------------------------------
    def _read(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except (RuntimeError, OSError, ValueError) as exc:
            if VANISHED not in str(exc):
                raise
            if self._lancedb_table is not None:
                self._lancedb_table.checkout_latest()
            return fn()

    def version(self) -> int:
        """The latest committed version (every call checks: read consistency interval 0)."""
        return self._read(lambda: int(self._latest().version))

    def dataset(self) -> Any:
        """The Lance dataset at the latest version, pinned there (for snapshots)."""
        return self._read(self._latest)

    def count(self, where: str | None = None) -> int:
        if where is None:
            return self._read(lambda: int(self._latest().count_rows()))
        return self._read(lambda: int(self._table.count_rows(where)))

    def scan(self, where: str | None = None, columns: Sequence[str] | None = None,
             limit: int | None = None) -> pa.Table:
        def run() -> pa.Table:
            query = self._table.search()
            if where:
                query = query.where(where)
            query = query.select(list(columns or LIGHT_COLUMNS))
            # No limit means every matching row (LanceDB's default limit is 10).
            query = query.limit(limit) if limit is not None else query.limit(None)
            return query.to_arrow()

        return self._read(run)

    def rows(self, where: str | None = None, with_vector: bool = False,
             limit: int | None = None) -> list[Memory]:
        columns = [*LIGHT_COLUMNS, "vector"] if with_vector else LIGHT_COLUMNS
        return [Memory.from_row(r) for r in self.scan(where, columns, limit).to_pylist()]

    def get(self, ids: Sequence[str], with_vector: bool = False) -> list[Memory]:
        if not ids:
            return []
        found = {m.id: m for m in self.rows(sql_in("id", ids), with_vector, len(ids))}
        return [found[i] for i in ids if i in found]

    def vector_search(self, vector: np.ndarray, where: str, limit: int) -> list[tuple[str, float]]:
        """Ids and cosine similarities of the nearest memories matching `where`."""
        if limit <= 0:
            return []
        result = self._read(
            lambda: self._table.search(vector.astype(np.float32), vector_column_name="vector")
            .distance_type("cosine")
            .where(where, prefilter=True)
            .select(["id", "_distance"])
            .limit(limit)
            .refine_factor(ANN_REFINE)  # no effect while the search is flat
            .to_arrow()
        )
        ids = result.column("id").to_pylist()
        dists = result.column("_distance").to_pylist()
        return [(i, 1.0 - float(d)) for i, d in zip(ids, dists, strict=True)]
