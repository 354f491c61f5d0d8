"""Recall's in-process snapshot of the table (real LanceDB, real model, real subprocesses):
it follows every committed version, including another process's writes, and its array
filters, positions and flat cosine search agree with LanceDB's own answers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from memory.recall import RecallOptions, _visibility
from memory.service import Memories
from memory.store.snapshot import Filter, Snapshot, SnapshotCache, _largest
from memory.timeparse import parse_time_expression

NOW = datetime(2025, 6, 16, 12, 0, tzinfo=UTC)
TEXTS = [
    ("fact", "The invoice exporter writes CSV files to the reports bucket", 3),
    ("decision", "We picked httpx over requests for the async billing client", 40),
    ("bug", "Upload worker raises TimeoutError when the queue payload is empty", 10),
    ("convention", "Always call validate_schema before migrate_tables in migrations", 200),
    ("note", "The staging deploy needs the redis cache flushed first", 1),
    ("fact", "Search vectors are normalised MiniLM embeddings of 384 floats", 70),
]


def ids(hits) -> list[str]:
    return [h.memory.id for h in hits]


@pytest.fixture
def filled(mem: Memories) -> dict[str, str]:
    return {text: mem.remember(text, kind=kind, valid_from=NOW - timedelta(days=age)).id
            for kind, text, age in TEXTS}


def opts(**kw) -> RecallOptions:
    return RecallOptions(reinforce=False, now=NOW, **kw)


def add_from_other_process(home: Path, text: str) -> str:
    """`memctl add` in its own process on the same data directory; returns the new id."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEMCTL_", "XDG_"))}
    env["MEMCTL_HOME"] = str(home)
    proc = subprocess.run([sys.executable, "-m", "memory.cli", "add", text, "--kind", "fact",
                           "--project", "test", "--json"], capture_output=True, text=True,
                          env=env, timeout=180)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["id"]


def test_a_write_from_another_process_is_seen_by_the_next_recall(
        mem: Memories, filled, home: Path) -> None:
    marker = "Zanzibarquux"
    assert all(marker not in h.memory.text for h in mem.search(marker, opts()))
    before = mem.store.snapshot()
    new_id = add_from_other_process(home, f"The {marker} service signs webhook payloads")
    # No write happened in this process: only the version check can have noticed it.
    assert new_id in ids(mem.search(f"{marker} webhook", opts()))
    after = mem.store.snapshot()
    assert after.version > before.version and after.position(new_id) is not None


def test_superseded_and_forgotten_memories_leave_recall_at_once(mem: Memories, filled) -> None:
    old = filled[TEXTS[1][1]]
    assert old in ids(mem.search("httpx billing client", opts()))
    new = mem.remember("We moved the billing client from httpx to aiohttp", kind="decision",
                       supersedes=old).id
    found = ids(mem.search("httpx billing client", opts()))
    assert new in found and old not in found
    assert old in ids(mem.search("httpx billing client", opts(include_superseded=True)))

    archived = filled[TEXTS[2][1]]
    assert archived in ids(mem.search("upload worker TimeoutError", opts()))
    mem.forget(archived)
    assert archived not in ids(mem.search("upload worker TimeoutError", opts()))

    erased = filled[TEXTS[4][1]]
    assert erased in ids(mem.search("staging deploy redis", opts()))
    mem.forget(erased, hard=True)
    assert erased not in ids(mem.search("staging deploy redis", opts()))


def test_snapshot_reloads_only_when_the_version_moves(mem: Memories, filled) -> None:
    cache = mem.store.snapshots
    first = mem.store.snapshot()
    reloads = cache.reloads
    assert mem.store.snapshot() is first and cache.reloads == reloads
    mem.remember("Feature flags are read from flags.toml at start-up", kind="fact")
    second = mem.store.snapshot()
    assert second is not first and second.version > first.version
    assert cache.reloads == reloads + 1 and len(second) == len(first) + 1
    assert mem.store.snapshot() is second


def test_positions_match_the_table_after_updates_and_compaction(mem: Memories, filled) -> None:
    # Updates delete rows inside fragments and append new ones; compaction rewrites them.
    mem.feedback(filled[TEXTS[0][1]], "helpful")
    mem.forget(filled[TEXTS[3][1]])
    for step in ("updated", "compacted"):
        if step == "compacted":
            mem.store.table.compact()
        snap = mem.store.snapshot()
        got = snap.take(snap.ids, ["id", "status"]).to_pylist()
        assert [r["id"] for r in got] == snap.ids, step
        table = {r["id"]: r["status"] for r in mem.store.table.scan(
            None, ["id", "status"]).to_pylist()}
        assert dict((r["id"], r["status"]) for r in got) == table, step
        # Ids it does not hold (never stored, or not an id at all) are dropped, in order.
        some = [snap.ids[-1], "0" * 16, snap.ids[0], "not an id", ""]
        assert [snap.ids[p] for p in snap.positions(some).tolist()] == [some[0], some[2]]
        assert snap.position("0" * 16) is None and snap.position(snap.ids[1]) == 1


def vectors_by_id(snap: Snapshot) -> dict[str, np.ndarray]:
    assert snap.vectors is not None
    rows = np.concatenate([b.rows(np.arange(len(b))) for b in snap.vectors])
    return {i: rows[p] for p, i in enumerate(snap.ids)}


def test_rewritten_rows_keep_their_vectors_without_reading_them_again(
        mem: Memories, filled) -> None:
    cache = mem.store.snapshots
    mem.store.snapshot()
    read = cache.vector_rows_read
    mem.feedback(filled[TEXTS[0][1]], "helpful")  # the row moves to a new fragment
    mem.store.snapshot()
    mem.store.table.compact()  # every row moves
    mem.store.snapshot()
    assert cache.vector_rows_read == read
    mem.remember("Feature flags are read from flags.toml at start-up", kind="fact")
    ours = vectors_by_id(mem.store.snapshot())
    assert cache.vector_rows_read == read + 1  # only the new memory's vector
    from_disk = vectors_by_id(SnapshotCache(mem.store.table, 10**6).current())
    assert ours.keys() == from_disk.keys() and len(ours) == len(TEXTS) + 1
    assert all(np.array_equal(ours[i], from_disk[i]) for i in ours)


@pytest.mark.parametrize("query, kw", [
    ("billing", {}),
    ("billing", {"include_superseded": True}),
    ("billing", {"kinds": ["fact", "bug"]}),
    ("billing", {"kinds": ["nonsense"]}),
    ("billing", {"since": NOW - timedelta(days=50), "until": NOW - timedelta(days=2)}),
    ("what happened last week", {}),
    ("decisions before 2025-05-01", {}),
])
def test_array_filter_matches_the_where_clause(mem: Memories, filled, query, kw) -> None:
    mem.remember("An unrelated project's note", kind="fact")  # same table, other rows
    mem.forget(filled[TEXTS[5][1]])
    o = opts(**kw)
    where, f = _visibility("test", o, parse_time_expression(query, NOW))
    snap = mem.store.snapshot()
    expected = set(mem.store.table.scan(where, ["id"]).column("id").to_pylist())
    assert set(snap.visible(snap.ids, f)) == expected


def test_flat_search_ranks_like_lancedb(mem: Memories, filled) -> None:
    snap = mem.store.snapshot()
    assert snap.vectors is not None  # a small table is searched in the snapshot
    f = Filter("test")
    where, _ = _visibility("test", opts(), None)
    for query in ("billing client library", "empty queue crash", "schema migrations order"):
        vector = mem._embed([query])[0]
        ours = snap.nearest(vector, f, 4)
        theirs = mem.store.table.vector_search(vector, where, 4)
        assert [i for i, _ in ours] == [i for i, _ in theirs]
        assert np.allclose([s for _, s in ours], [s for _, s in theirs], atol=1e-5)


def test_a_table_past_the_flat_limit_keeps_no_vectors(mem: Memories, filled) -> None:
    cache = mem.store.snapshots
    cache.flat_max_rows = 1  # as if the table had outgrown flat search
    cache.invalidate()
    snap = mem.store.snapshot()
    assert snap.vectors is None
    assert filled[TEXTS[0][1]] in ids(mem.search("invoice exporter CSV", opts()))


def test_deleted_copies_left_by_updates_do_not_count_toward_the_flat_limit(
        mem: Memories, filled) -> None:
    cache = mem.store.snapshots
    cache.flat_max_rows = len(TEXTS) + 1  # flat for these rows, but not for twice as many
    mem.store.table.compact()  # one fragment, so that updated rows leave deleted copies
    for _ in range(2):  # each flush of access counts rewrites the rows it counts
        mem.store.touch(list(filled.values())[:3], NOW)
        mem.store.flush_touches()
    fragments = mem.store.table.dataset().get_fragments()
    assert sum(f.metadata.physical_rows for f in fragments) > cache.flat_max_rows
    cache.invalidate()
    assert mem.store.snapshot().vectors is not None


def test_a_write_finds_its_neighbours_in_the_snapshot_as_lancedb_does(
        mem: Memories, filled) -> None:
    vector = mem._embed(["We chose httpx rather than requests for the async billing client"])[0]
    similar, links, close = mem.related(vector, "decision")
    assert filled[TEXTS[1][1]] in links and [s.id for s in similar] == [filled[TEXTS[1][1]]]
    cache = mem.store.snapshots
    cache.flat_max_rows = 1  # past the flat limit: LanceDB searches instead
    cache.invalidate()
    assert mem.store.snapshot().vectors is None
    similar2, links2, close2 = mem.related(vector, "decision")
    assert links2 == links and [s.id for s in similar2] == [s.id for s in similar]
    assert [m.id for m, _ in close2] == [m.id for m, _ in close]
    assert np.allclose([c for _, c in close2], [c for _, c in close], atol=1e-5)
    assert [m.text for m, _ in close2] == [m.text for m, _ in close]


def test_a_large_table_prefilters_on_reduced_vectors_and_keeps_the_exact_top(
        mem: Memories, monkeypatch: pytest.MonkeyPatch) -> None:
    from memory.bench import synthetic
    from memory.store import snapshot

    monkeypatch.setattr(snapshot, "PREFILTER_MIN_ROWS", 200)  # as if it were a large table
    mem.insert_many([mem.prepare(text, kind=kind, valid_from=when)
                     for kind, text, when in synthetic.generate(400)])
    snap = mem.store.snapshot()
    assert snap.basis is not None and snap.basis.shape == (384, snapshot.REDUCED_DIM)
    f = Filter("test")
    found = 0
    queries = synthetic.queries(20)
    for query in queries:
        vector = mem._embed([query])[0]
        approx = snap.nearest(vector, f, 10)
        exact = snap.nearest(vector, f, 10, exact=True)
        # Only 100 of 400 rows are scored exactly, with their exact similarity.
        sims = dict(exact)
        assert all(abs(s - sims[i]) < 1e-6 for i, s in approx if i in sims)
        found += len({i for i, _ in approx} & set(sims))
    assert found >= 0.95 * 10 * len(queries)
    # The temporal channel then searches the same vector within a window: the reduced
    # similarities of the search above serve it, with the answer computed afresh.
    middle = int(np.median(snap.valid_from))
    window = Filter("test", bounds=((None, middle),))
    assert int((snap.valid_from < middle).sum()) > 100  # more than the exact pool: prefiltered
    reused = snap.nearest(vector, window, 10)
    snap._approx = None
    assert snap.nearest(vector, window, 10) == reused
    assert all(snap.valid_from[snap.position(i)] < middle for i, _ in reused)
    other = mem._embed([queries[0]])[0]  # another vector never gets the last one's scores
    first = snap.nearest(other, window, 10)
    snap._approx = None
    assert snap.nearest(other, window, 10) == first != reused
    # An update narrows a fragment: its reduced copy stays, the basis with it.
    mem.feedback(snap.ids[0], "helpful")
    after = mem.store.snapshot()
    assert after.version > snap.version and after.basis is snap.basis
    vector = mem._embed([queries[0]])[0]
    assert [i for i, _ in after.nearest(vector, f, 10)] == [
        i for i, _ in snap.nearest(vector, f, 10)]


@pytest.mark.parametrize("size,n", [(100_000, 2_000), (5_000, 150), (1_000, 999), (10, 10),
                                    (10, 50), (3, 1)])
def test_largest_picks_what_argpartition_picks(size: int, n: int) -> None:
    values = np.random.default_rng(size + n).standard_normal(size).astype(np.float32)
    got = _largest(values, n)
    assert len(got) == min(n, size) and len(set(got.tolist())) == len(got)
    if n < size:
        assert np.sort(values[got]).tolist() == np.sort(values)[size - n:].tolist()


def test_largest_survives_an_unlucky_sample() -> None:
    # The sample (every 8th value) holds the largest values, so its threshold keeps fewer
    # than n: the full partition must take over.
    values = np.arange(1_000, dtype=np.float32)
    values[::8] += 10_000.0
    got = _largest(values, 100)
    assert np.sort(values[got]).tolist() == np.sort(values)[-100:].tolist()
