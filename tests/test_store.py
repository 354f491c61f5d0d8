"""Store-level guarantees: write order and recovery, doctor, schema migration."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import lancedb
import numpy as np
import pyarrow as pa
import pytest

from memory.config import paths
from memory.project import Project
from memory.record import EMBED_DIM, SCHEMA, Memory, to_table
from memory.service import LazyEmbedder, Memories
from memory.store import MAX_SMALL_FRAGMENTS, LexicalDoc, MemoryStore


def test_crash_between_table_and_index_is_recovered_on_open(mem: Memories, home: Path,
                                                            embedder) -> None:
    acked = mem.prepare("The retry budget for uploads is five attempts", kind="fact")
    acked.vector = embedder.embed([acked.text])[0].tolist()
    # The table write is the acknowledgement; simulate dying before the index write.
    mem.store.table.add([acked])
    assert acked.id not in mem.store.lexical.all_ids()

    reopened = MemoryStore(paths(home))  # what the next process does
    assert acked.id in reopened.lexical.all_ids()
    assert reopened.doctor().clean
    again = Memories(reopened, LazyEmbedder(lambda: embedder), mem.project)
    hits = again.search("upload retry budget", None)
    assert hits[0].memory.id == acked.id and "lexical" in hits[0].ranks


def test_doctor_reports_and_repairs_a_diverged_index(mem: Memories) -> None:
    ids = [mem.remember(f"Fact {i}: service {i} owns queue q{i}", kind="fact").id
           for i in range(4)]
    store = mem.store
    store.lexical.write(delete=[ids[0], ids[1]],
                        add=[LexicalDoc("00000000000000ff", "test", "ghost document")])
    report = store.doctor(repair=False)
    assert report.missing_from_index == sorted(ids[:2])
    assert report.orphans_in_index == ["00000000000000ff"]
    assert not report.clean and not report.repaired

    fixed = store.doctor(repair=True)
    assert fixed.repaired
    assert store.doctor().clean
    assert store.lexical.all_ids() == set(ids)


def test_doctor_repairs_a_half_done_supersede(mem: Memories) -> None:
    old = mem.remember("Releases are cut from main", kind="decision").id
    new = mem.prepare("Releases are cut from release branches", kind="decision",
                      supersedes=old)
    new.vector = mem._embed([new.text])[0].tolist()
    mem.store.insert([new])  # crash before the old record was marked superseded
    report = mem.store.doctor(repair=True)
    assert report.broken_supersede_links == [new.id]
    assert mem.get(old).superseded_by == new.id
    assert mem.store.doctor().clean


def test_schema_migration_from_version_1(home: Path, embedder) -> None:
    # A version-1 store lacked links, status and redactions.
    v1 = pa.schema([f for f in SCHEMA if f.name not in ("links", "status", "redactions")])
    now = datetime(2025, 1, 2, tzinfo=UTC)
    row = {f.name: None for f in v1}
    row.update(id="0000000000000abc", project="legacy", kind="decision",
               text="Old stores keep working after an upgrade", content_hash="h",
               created_at=now, valid_from=now, updated_at=now, source="user",
               tags=["x"], entities=[], files=[], importance=0.5, trust_alpha=4.0,
               trust_beta=1.0, access_count=0,
               vector=embedder.embed(["Old stores keep working after an upgrade"])[0].tolist())
    p = paths(home).ensure()
    db = lancedb.connect(str(p.lance))
    db.create_table("memories", pa.Table.from_pylist([row], schema=v1))

    store = MemoryStore(p)
    assert set(store.migrated) == {"links", "status", "redactions"}
    assert store.table.missing_columns() == []
    mem = Memories(store, LazyEmbedder(lambda: embedder), Project("legacy", "legacy"))
    old = mem.get("0000000000000abc")
    assert old.status == "active" and old.links == [] and old.redactions == []
    hits = mem.search("do old stores keep working after upgrading", None)
    assert hits and hits[0].memory.id == old.id
    new = mem.remember("New memories land next to migrated ones", kind="note")
    assert mem.get(new.id).status == "active"
    assert MemoryStore(p).migrated == []  # idempotent


def test_touch_flush_writes_one_version_per_distinct_count(mem: Memories) -> None:
    ids = [mem.remember(f"Touch fixture {w}: the cache lives in {w}/", kind="fact").id
           for w in ("alpha", "beta", "gamma")]
    store = mem.store
    when = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)
    before = store.table.version()
    store.touch(ids[:2], when)
    store.flush_touches()
    # Each version makes every process's recall snapshot reload: one, not one per column.
    assert store.table.version() == before + 1
    store.touch(ids, when)
    store.touch(ids[:1], when)
    store.flush_touches()
    assert store.table.version() == before + 3  # counts 2 and 1: one update each
    got = {m.id: m for m in store.table.get(ids)}
    assert [got[i].access_count for i in ids] == [3, 2, 1]
    assert all(got[i].last_accessed_at == when for i in ids)


def test_lexical_search_sees_a_commit_by_another_writer(tmp_path: Path) -> None:
    # The reader reloads only when meta.json changes: another writer's commit (another
    # process, here another handle on the same folder) must still be seen at once.
    from memory.store.lexical import LexicalIndex

    reader, writer = LexicalIndex(tmp_path / "lex"), LexicalIndex(tmp_path / "lex")
    assert reader.search("p", "parseConfig", 10) == []
    for n, word in enumerate(["parseConfig", "loadSettings", "parseConfig again"], start=1):
        writer.write(add=[LexicalDoc(f"{n:016x}", "p", f"{word} in src/app.py")])
        hits = [doc_id for doc_id, _ in reader.search("p", "parseConfig", 10)]
        assert len(hits) == (1 if n < 3 else 2)
    writer.write(delete=["0000000000000001"])
    assert [d for d, _ in reader.search("p", "parseConfig", 10)] == ["0000000000000003"]


def test_lexical_scores_are_the_same_with_and_without_other_projects(tmp_path: Path) -> None:
    # Alone in the index, a project is searched without the project filter; with others it
    # is filtered. Either way only its documents come back, in the same order.
    from memory.store.lexical import LexicalIndex

    index = LexicalIndex(tmp_path / "lex")
    texts = ["retry the upload worker", "upload worker timeout", "worker pool size", "cache"]
    index.write(add=[LexicalDoc(f"{n:016x}", "a", t) for n, t in enumerate(texts, start=1)])
    alone = index.search("a", "upload worker", 10)
    index.write(add=[LexicalDoc(f"{n:016x}", "b", t) for n, t in enumerate(texts, start=11)])
    with_b = index.search("a", "upload worker", 10)
    assert {d for d, _ in with_b} == {d for d, _ in alone} == {f"{n:016x}" for n in (1, 2, 3)}
    assert [d for d, _ in with_b] == [d for d, _ in alone]  # BM25 statistics include b
    # The filter adds nothing to a score: b's copies of the same texts score the same.
    assert [s for _, s in index.search("b", "upload worker", 10)] == [s for _, s in with_b]
    index.write(delete=[f"{n:016x}" for n in range(11, 15)])
    assert [d for d, _ in index.search("a", "upload worker", 10)] == [d for d, _ in alone]
    assert index.search("b", "upload worker", 10) == []


def test_processes_of_one_write_each_keep_the_table_compact(home: Path, embedder) -> None:
    # The CLI and the hooks are processes of one write; each opens the store afresh.
    for n in range(MAX_SMALL_FRAGMENTS + 6):
        store = MemoryStore(paths(home))
        Memories(store, LazyEmbedder(lambda: embedder), Project("test", "test")).remember(
            f"Fragment note {n}: the nightly export job number {n} writes to bucket {n}")
    fragments = store.table.dataset().get_fragments()
    assert len(fragments) <= MAX_SMALL_FRAGMENTS
    assert store.table.count() == MAX_SMALL_FRAGMENTS + 6
    assert store.table.small_fragments() == len(fragments)  # all far under the size


def test_rows_are_written_as_built_vectors_included(tmp_path: Path) -> None:
    now = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    vec = np.linspace(-1.0, 1.0, EMBED_DIM, dtype=np.float32)
    memory = Memory(id="00000000000000a1", project="p", kind="fact", text="one",
                    content_hash="h1", created_at=now, valid_from=now, tags=["x", "y"],
                    valid_to=now, vector=vec.tolist())
    table = lancedb.connect(tmp_path).create_table("m", to_table([memory]))
    # Every field comes back as written, the vector float32-exact.
    assert [Memory.from_row(r) for r in table.to_arrow().to_pylist()] == [memory]

    def bad(vector: list[float] | None) -> Memory:
        return Memory(id="00000000000000a2", project="p", kind="fact", text="bad",
                      content_hash="h2", created_at=now, valid_from=now, vector=vector)

    with pytest.raises(ValueError, match="384 values"):
        to_table([memory, bad([0.5] * 3)])
    with pytest.raises(ValueError, match="no vector"):
        to_table([bad(None)])
