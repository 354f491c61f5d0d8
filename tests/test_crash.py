"""Crash safety: a real worker process is SIGKILLed while it writes; the store must keep every
acknowledged memory, once, findable, with doctor clean after recovery (issue #7)."""

from __future__ import annotations

from pathlib import Path

from memory.bench.crash_verify import (
    Expect,
    Ledger,
    check_channels,
    check_rows,
    erased_text_on_disk,
    probe,
)
from memory.bench.crash_worker import content
from memory.config import paths
from memory.store import MemoryStore


def test_killed_writers_lose_nothing(cli) -> None:
    """`memctl bench crash`: rounds of SIGKILL at random moments, restart, full checks."""
    res = cli("bench", "crash", "--rounds", "4", "--seed", "11", "--json", timeout=600)
    assert res.code == 0, res.stdout + res.stderr
    result = res.json()

    assert result["errors"] == []
    # Every round ended in a SIGKILL, not in the worker running out of work.
    assert result["killed"] == 4 and result["completed_without_kill"] == 0
    assert result["kills"]["write"] + result["kills"]["compaction"] >= 1
    assert result["acknowledged"] > 20  # more than the memories stored before round 1
    assert result["lost"] == 0
    assert result["duplicates"] == 0
    assert result["resurrected"] == 0 and result["wrong_state"] == 0
    assert result["unfindable"] == {}
    assert result["doctor_clean"] is True
    assert result["rounds_survived"] == 4


def test_checks_catch_loss_duplicates_and_index_gaps(mem) -> None:
    """The checker itself can fail: hand it a store with each kind of damage."""
    # Others around them, as in a real project (an entity held by >10% ranks nothing).
    mem.insert_many([mem.prepare(content(f"crk0n{i}")[0]) for i in range(24)])
    ledger = Ledger()
    ids = []
    for marker in ("crk1n1", "crk1n2", "crk1n3"):
        text, file, kind = content(marker)
        r = mem.remember(text, kind=kind, files=[file])
        ledger.apply(f"ACK {r.id} {marker}")
        ids.append(r.id)
    ledger.apply("ACK 00000000000000ff crk1n9")  # acknowledged, never stored

    found, present = check_rows(mem, ledger)
    assert found.lost == ["00000000000000ff"]
    assert found.adopted == 24  # the fillers: stored, never acknowledged
    assert set(ids) <= present and found.duplicates == 0 and not found.wrong_state

    # A second row with the same content (what a replayed write would leave).
    mem.insert_many([mem.prepare(content("crk1n1")[0])])
    # Archived behind the ledger's back; and one memory dropped from the BM25 index.
    mem.forget(ids[1])
    mem.store.lexical.write(delete=[ids[2]])
    found, present = check_rows(mem, ledger)
    assert found.duplicates == 1
    assert found.wrong_state == [ids[1]]
    check_channels(mem, ledger, present, found)
    assert ("lexical index", ids[2]) in found.unfindable
    assert {("lexical", ids[2]), ("fused", ids[2])} & found.unfindable
    assert not any(mid == ids[0] for _, mid in found.unfindable), found.unfindable


def test_cut_off_operations_settle_on_what_recovery_left(mem) -> None:
    ledger = Ledger()
    text, file, _ = content("crk2n1")
    r = mem.remember(text, files=[file])
    ledger.apply(f"ACK {r.id} crk2n1")
    ledger.cut_off("forget", r.id)  # killed inside forget: either state is fine once
    mem.forget(r.id)
    found, _ = check_rows(mem, ledger)
    assert not found.wrong_state and ledger.memories[r.id].archived is True
    # From then on it must stay archived.
    mem.store.update([r.id], {"status": "active"})
    found, _ = check_rows(mem, ledger)
    assert found.wrong_state == [r.id]
    assert ledger.memories[r.id] == Expect("crk2n1", archived=True)


def test_probe_sees_what_recovery_repairs(mem, home: Path) -> None:
    # The state a kill between the table commit and the index commit leaves.
    record = mem.prepare(content("crk3n1")[0])
    record.vector = mem.embedder().embed([record.text])[0].tolist()
    with mem.store.lock.hold():
        mem.store.table.add([record])
    assert probe(paths(home)).missing_from_index == 1

    reopened = MemoryStore(paths(home))  # recovery on open
    assert reopened.doctor().clean
    assert probe(paths(home)).needs_repair is False
    assert record.id in reopened.lexical.all_ids()


def test_cut_off_hard_erase_is_finished_on_restart(mem, home: Path) -> None:
    """A kill inside `forget --hard` after the table delete committed used to leave the text
    in LanceDB's old versions with doctor clean, and a retried erase found nothing to erase."""
    ledger = Ledger()
    for marker in ("crk4n1", "crk4n2"):
        text, file, kind = content(marker)
        ledger.apply(f"ACK {mem.remember(text, kind=kind, files=[file]).id} {marker}")
    gone = next(iter(ledger.memories))
    with mem.store.lock.hold():
        mem.store.table.delete([gone])  # the first step of MemoryStore.erase
    ledger.apply(f"ERASED {gone}")
    assert erased_text_on_disk(paths(home), ledger) == [gone]
    assert probe(paths(home)).orphans_in_index == 1

    reopened = MemoryStore(paths(home))  # recovery finishes the erase
    assert erased_text_on_disk(paths(home), ledger) == []
    assert gone not in reopened.lexical.all_ids()
    assert reopened.doctor().clean and reopened.table.count() == 1


def test_bench_crash_rejects_bad_input(cli) -> None:
    bad = cli("bench", "crash", "--rounds", "0")
    assert bad.code == 2
    assert "--rounds must be between" in bad.stderr and "Traceback" not in bad.stderr
