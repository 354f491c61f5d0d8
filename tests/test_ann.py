"""The ANN vector index: built once a table is large, same answers as exact search."""

from __future__ import annotations

import numpy as np

from memory.bench.ann_measure import synthetic_records, synthetic_vectors
from memory.locking import FileLock
from memory.store import MemoryStore
from memory.store.table import MAX_INDEX_DELTAS

WHERE = "project = 'bench' AND status = 'active' AND superseded_by IS NULL"


def _exact(store: MemoryStore, q: np.ndarray, k: int) -> list[str]:
    result = (store.table._table.search(q, vector_column_name="vector").distance_type("cosine")
              .where(WHERE, prefilter=True).select(["id"]).limit(k).bypass_vector_index()
              .to_arrow())
    return result.column("id").to_pylist()


def test_index_built_past_threshold_and_agrees_with_exact_search(store: MemoryStore) -> None:
    vectors = synthetic_vectors(600)
    store.insert(synthetic_records(vectors[:150], 0))
    assert not store.index_vectors_if_large(min_rows=300, background=False)  # too small
    store.insert(synthetic_records(vectors[150:400], 150))
    assert store.index_vectors_if_large(min_rows=300, background=False)
    assert store.table.has_vector_index()
    assert not store.index_vectors_if_large(min_rows=300, background=False)  # once

    # Rows added after the build are searched too (flat, until compaction indexes them).
    store.insert(synthetic_records(vectors[400:], 400))
    rng = np.random.default_rng(5)
    for n in rng.integers(0, 600, 12):
        q = vectors[n]
        ann = [i for i, _ in store.table.vector_search(q, WHERE, 10)]
        exact = _exact(store, q, 10)
        assert ann[0] == exact[0]
        assert len(set(ann) & set(exact)) >= 9
    store.table.compact()
    q = vectors[599]
    assert store.table.vector_search(q, WHERE, 1)[0][0] == _exact(store, q, 1)[0]


def test_index_deltas_are_merged_and_recall_filters_indexed(store: MemoryStore) -> None:
    vectors = synthetic_vectors(600)
    store.insert(synthetic_records(vectors[:300], 0))
    assert store.index_vectors_if_large(min_rows=300, background=False)
    assert store.table.missing_filter_indexes() == []
    assert store.table.vector_index_deltas() == 1
    # Each compaction adds the new rows to the index as one more delta.
    for n in range(MAX_INDEX_DELTAS):
        start = 300 + 50 * n
        store.insert(synthetic_records(vectors[start:start + 50], start))
        store.table.compact()
    assert store.table.vector_index_deltas() == MAX_INDEX_DELTAS + 1
    assert store.index_vectors_if_large(min_rows=300, background=False)
    assert store.table.vector_index_deltas() == 1
    assert not store.index_vectors_if_large(min_rows=300, background=False)  # nothing to do
    for n in (0, 310, 449):
        assert store.table.vector_search(vectors[n], WHERE, 1)[0][0] == _exact(
            store, vectors[n], 1)[0]


def test_one_builder_across_processes(store: MemoryStore) -> None:
    store.insert(synthetic_records(synthetic_vectors(50), 0))
    other = FileLock(store.paths.ann_lock)  # another process building right now
    assert other.try_acquire()
    try:
        assert not store.index_vectors_if_large(min_rows=10, background=False)
        assert not store.table.has_vector_index()
    finally:
        other.release()
    assert store.index_vectors_if_large(min_rows=10, background=False)


def test_hard_erase_waits_for_an_index_build(store: MemoryStore) -> None:
    # Erase drops unverified files: an index build's uncommitted files must not be among them.
    import threading

    records = synthetic_records(synthetic_vectors(20), 0)
    store.insert(records)
    builder = FileLock(store.paths.ann_lock)
    assert builder.try_acquire()
    done = threading.Event()

    def erase() -> None:
        store.erase([records[0].id])
        done.set()

    worker = threading.Thread(target=erase)
    worker.start()
    try:
        assert not done.wait(1.0)  # blocked while the build runs
    finally:
        builder.release()
    worker.join(60)
    assert done.is_set()
    assert store.table.get([records[0].id]) == []


def test_a_background_build_runs_in_its_own_process_past_its_parents_exit(
        store: MemoryStore) -> None:
    import subprocess
    import sys

    store.insert(synthetic_records(synthetic_vectors(400), 0))
    # A short-lived command asks for the build and exits at once: cleanly, with the
    # builder process carrying on and holding the build lock until it is done.
    code = ("import sys; from pathlib import Path; from memory.config import paths; "
            "from memory.store import MemoryStore; "
            "s = MemoryStore(paths(Path(sys.argv[1]))); "
            "print(s.index_vectors_if_large(min_rows=300))")
    out = subprocess.run([sys.executable, "-c", code, str(store.paths.home)],
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0 and out.stdout.strip() == "True", out.stderr
    # Waiting on the lock waits for the builder: had it not inherited the lock, the wait
    # would return at once, before any index exists.
    with FileLock(store.paths.ann_lock).wait():
        assert store.table.has_vector_index()
        assert store.table.missing_filter_indexes() == []
    assert not store.index_vectors_if_large(min_rows=300)  # nothing left to do
