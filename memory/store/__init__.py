"""The memory store: a LanceDB table (source of truth) plus a derived Tantivy index.

Write order: the table first (that commit is the acknowledgement), then the index. A crash in
between leaves the index short of some ids, never the reverse for additions; a crash during a
hard erase can leave the index with extra ids. Both are detected by comparing the two stores
(cheaply by count on every open and write, fully by id in `doctor`) and repaired from the
table. All writes hold one short cross-process lock, so several memctl processes (one per
agent session) can share a store.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from memory.config import Paths
from memory.locking import FileLock, WriteLock
from memory.record import Memory
from memory.store import indexer
from memory.store.lexical import LexicalDoc, LexicalIndex
from memory.store.snapshot import FLAT_MAX_ROWS, Snapshot, SnapshotCache
from memory.store.table import (
    ANN_MIN_ROWS,
    MAX_INDEX_DELTAS,
    MemoryTable,
    sql_in,
    timestamp_sql,
)

__all__ = ["DoctorReport", "LexicalDoc", "MemoryStore"]

BATCH = 2_000
# Every write adds a LanceDB fragment and version; reads slow down as small fragments pile
# up (recall's snapshot loops over fragments), so every write checks the count (a read of
# the manifest it just wrote) and compacts past this many. Counting by process (once every
# 32 writes before) never compacted for the CLI and hooks, each a process of one write: a
# 100,000-memory table reached 91 fragments: a 4.4 ms vector scan instead of 3.4.
MAX_SMALL_FRAGMENTS = 16
# The ANN index's own check (a count and the index list) stays once every this many writes.
INDEX_CHECK_EVERY = 32
# Recall reinforcement (access counts) is a write too: batched instead of one per recall.
# Each flush is a table version that every process's snapshot reloads (45-100 ms at 100,000
# memories, more while the flush itself still runs) and a Lance update that scans the table;
# decay works in days, so half a minute of delay costs nothing. The flush is paced by time:
# a count trigger (256 before) made the background writes grow with the query rate, and at
# 100,000 memories put a reload in one recall of 16 (p95 80 ms against 35 ms without).
# The count only bounds memory.
TOUCH_BATCH = 4096
TOUCH_MAX_AGE_S = 30.0


def lexical_doc(memory: Memory) -> LexicalDoc:
    return LexicalDoc(
        id=memory.id,
        project=memory.project,
        text=memory.text,
        title=memory.title,
        tags=memory.tags,
        entities=memory.entities,
    )


@dataclass
class DoctorReport:
    table_rows: int = 0
    index_docs: int = 0
    missing_from_index: list[str] = field(default_factory=list)
    orphans_in_index: list[str] = field(default_factory=list)
    broken_supersede_links: list[str] = field(default_factory=list)
    migrated_columns: list[str] = field(default_factory=list)
    repaired: bool = False

    @property
    def clean(self) -> bool:
        return not (self.missing_from_index or self.orphans_in_index
                    or self.broken_supersede_links)


class MemoryStore:
    def __init__(self, paths: Paths) -> None:
        self.paths = paths.ensure()
        self.lock = WriteLock(paths.write_lock)
        with self.lock.hold():
            self.table = MemoryTable(paths.lance)
            self.migrated = self.table.migrate()
            self.lexical = LexicalIndex(paths.lexical)
            self._reconcile_if_diverged()
        # Up to FLAT_MAX_ROWS the snapshot also holds the vectors, for recall's exact search.
        self.snapshots = SnapshotCache(self.table, FLAT_MAX_ROWS)
        self._writes = 0
        self._compact_above = MAX_SMALL_FRAGMENTS
        self._touch_lock = threading.Lock()
        self._touched: Counter[str] = Counter()
        self._touched_at: datetime | None = None
        self._touch_started = 0.0
        self._flusher: threading.Thread | None = None
        atexit.register(self._flush_at_exit)

    def snapshot(self) -> Snapshot:
        """Recall's view of the table at its latest version (reloaded when it moved)."""
        return self.snapshots.current()

    # -- maintenance --------------------------------------------------------------------
    def _wrote(self) -> None:
        self._writes += 1
        if self.compact_if_fragmented() or self._writes % INDEX_CHECK_EVERY == 0:
            self.index_vectors_if_large()

    def index_vectors_if_large(self, min_rows: int = ANN_MIN_ROWS,
                               background: bool = True) -> bool:
        """Start building the ANN index once the table has `min_rows` rows, or maintaining it
        (filter indexes, too many deltas) once it exists; in a process of its own unless not
        `background`. One builder across processes; a failed build is retried later."""
        if self.table.count() < min_rows:
            return False
        deltas = self.table.vector_index_deltas()
        if deltas and deltas <= MAX_INDEX_DELTAS and not self.table.missing_filter_indexes():
            return False
        builder = FileLock(self.paths.ann_lock)
        if not builder.try_acquire():
            return False  # another process is building it
        if background:
            fd = builder.detach()
            try:
                indexer.spawn(self.paths.lance, fd)
            except OSError:
                pass  # no process to spare: the next write retries
            finally:
                os.close(fd)  # the builder holds the lock from here on
            return True
        try:
            with contextlib.suppress(Exception):  # best effort: search stays exact
                indexer.maintain(self.table)
        finally:
            builder.release()
        return True

    def compact_if_fragmented(self) -> bool:
        """Merge small fragments (and drop versions older than an hour) once they pile up."""
        with self.lock.hold():
            if self.table.small_fragments() <= self._compact_above:
                return False
            self.table.compact()
            # Should some fragments stay apart, do not compact again at every write.
            self._compact_above = self.table.small_fragments() + MAX_SMALL_FRAGMENTS
            return True

    def touch(self, ids: Sequence[str], when: datetime) -> None:
        """Record that recall returned `ids`; written in batches (and at exit)."""
        with self._touch_lock:
            if not self._touched:
                self._touch_started = time.monotonic()
            self._touched.update(ids)
            self._touched_at = when
            due = (len(self._touched) >= TOUCH_BATCH
                   or time.monotonic() - self._touch_started >= TOUCH_MAX_AGE_S)
        if due:
            # Written by a background thread: a recall does not wait for the write.
            with self._touch_lock:
                if self._flusher is None or not self._flusher.is_alive():
                    self._flusher = threading.Thread(target=self._flush_in_background,
                                                     name="memctl-touch", daemon=True)
                    self._flusher.start()

    def _flush_in_background(self) -> None:
        self.flush_touches()
        with contextlib.suppress(Exception):  # best effort, like the flush itself
            self._wrote()  # touches add fragments too: let them count toward compaction
            self.snapshots.current()  # reload here rather than in the next recall

    def _flush_at_exit(self) -> None:
        flusher = self._flusher
        if flusher is not None:
            flusher.join(timeout=30)
        self.flush_touches()

    def flush_touches(self) -> None:
        with self._touch_lock:
            counts, when = self._touched, self._touched_at
            self._touched, self._touched_at = Counter(), None
        if not counts or when is None:
            return
        by_count: dict[int, list[str]] = {}
        for memory_id, n in counts.items():
            by_count.setdefault(n, []).append(memory_id)
        # One update per distinct count (usually one), time included: every table version
        # makes each process's recall snapshot reload once. (Lance's SQL has no CASE.)
        stamp = timestamp_sql(when)
        # Best effort: a lost access count must never fail a recall or an exit.
        with contextlib.suppress(Exception), self.lock.hold():
            for n, ids in by_count.items():
                self.table.update(ids, None, {"access_count": f"access_count + {n}",
                                              "last_accessed_at": stamp})

    # -- writes -------------------------------------------------------------------------
    def insert(self, memories: Sequence[Memory]) -> None:
        if not memories:
            return
        with self.lock.hold():
            self.table.add(memories)  # acknowledged from here on
            self.lexical.write(add=[lexical_doc(m) for m in memories])
            self._reconcile_if_diverged()
            self._wrote()

    def supersede(self, old_id: str, new_id: str, when: object) -> None:
        with self.lock.hold():
            self.table.update([old_id], {"superseded_by": new_id, "valid_to": when,
                                         "updated_at": when})
            self._wrote()

    def update(self, ids: Sequence[str], values: dict | None = None,
               values_sql: dict[str, str] | None = None) -> None:
        with self.lock.hold():
            self.table.update(ids, values, values_sql)
            self._wrote()

    def erase(self, ids: Sequence[str], progress: Callable[[int, int], None] | None = None) -> None:
        """Hard delete: gone from the table, its old versions and the index files."""
        with self.lock.hold():
            self.table.delete(ids)
            self._purge_history()
            self.lexical.erase(self._all_docs(progress))

    def _purge_history(self) -> None:
        # Dropping unverified files would also drop an index build's files that are written
        # but not yet committed: wait for any build (in any process) to finish first.
        with FileLock(self.paths.ann_lock).wait():
            self.table.purge_history()

    # -- consistency --------------------------------------------------------------------
    def _all_docs(self, progress: Callable[[int, int], None] | None = None) -> Iterable[LexicalDoc]:
        total = self.table.count()
        columns = ["id", "project", "text", "title", "tags", "entities"]
        done = 0
        for batch in self.table.scan(columns=columns).to_batches(BATCH):
            for row in batch.to_pylist():
                yield LexicalDoc(row["id"], row["project"], row["text"], row["title"],
                                 row["tags"] or [], row["entities"] or [])
            done += batch.num_rows
            if progress:
                progress(done, total)

    def _reconcile_if_diverged(self) -> None:
        # Counts are cheap to read; only when they differ do we compare ids.
        if self.table.count() != self.lexical.count():
            self.doctor(repair=True)

    def doctor(self, repair: bool = False) -> DoctorReport:
        with self.lock.hold():
            report = DoctorReport(migrated_columns=list(self.migrated))
            table_ids = set(self.table.scan(columns=["id"]).column("id").to_pylist())
            index_ids = self.lexical.all_ids()
            report.table_rows, report.index_docs = len(table_ids), len(index_ids)
            report.missing_from_index = sorted(table_ids - index_ids)
            report.orphans_in_index = sorted(index_ids - table_ids)
            report.broken_supersede_links = self._broken_links()
            if repair and not report.clean:
                self._repair(report)
                report.repaired = True
            return report

    def _broken_links(self) -> list[str]:
        """Successors whose predecessor was never marked superseded (crash between writes)."""
        succ = self.table.scan("supersedes IS NOT NULL", ["id", "supersedes"]).to_pylist()
        if not succ:
            return []
        olds = {r["supersedes"]: r["id"] for r in succ}
        rows = self.table.scan(sql_in("id", list(olds)), ["id", "superseded_by"]).to_pylist()
        return sorted(olds[r["id"]] for r in rows if r["superseded_by"] is None)

    def _repair(self, report: DoctorReport) -> None:
        if report.orphans_in_index:
            # Only a hard erase cut off after its table delete leaves these. Finish it: a
            # plain index delete would leave the text in the table's old versions and the
            # index files, and a retried erase finds no memory to erase.
            self._purge_history()
            self.lexical.erase(self._all_docs())  # re-adds the missing ones too
        elif report.missing_from_index:
            missing = self.table.get(report.missing_from_index)
            self.lexical.write(add=[lexical_doc(m) for m in missing])
        for new in self.table.get(report.broken_supersede_links):
            if new.supersedes:
                self.table.update([new.supersedes], {"superseded_by": new.id,
                                                     "valid_to": new.created_at})

    def reindex(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Rebuild the Tantivy index from the table."""
        with self.lock.hold():
            self.lexical.write(add=self._all_docs(progress), clear=True)
            return self.lexical.count()
