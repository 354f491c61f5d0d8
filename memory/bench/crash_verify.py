"""What `memctl bench crash` checks after each kill: the ledger of what the worker was told
is stored, a look at the store before recovery runs, and the checks after it."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from memory.bench.crash_worker import content
from memory.config import Paths

if TYPE_CHECKING:
    from memory.service import Memories

MARKER_RE = re.compile(r"\(ticket (crk\d+n\d+),")
CHANNELS = ("lexical", "semantic", "entity", "fused")
TOP_K = 10


@dataclass
class Expect:
    """What must hold for one memory. None: an operation on it was cut off, so either
    outcome is allowed once; the state seen after recovery is then what must last."""

    marker: str
    archived: bool | None = False
    erased: bool | None = False
    superseded_by: str | None = None
    supersede_open: bool = False
    adopted: bool = False  # stored but never acknowledged (the kill came first)


@dataclass
class Ledger:
    memories: dict[str, Expect] = field(default_factory=dict)

    def apply(self, line: str) -> None:
        """Take in one worker line that states an outcome."""
        parts = line.split()
        if len(parts) == 3 and parts[0] == "ACK":
            self.memories[parts[1]] = Expect(parts[2])
        elif len(parts) == 2 and parts[0] in ("ARCHIVED", "ERASED") and parts[1] in self.memories:
            setattr(self.memories[parts[1]], parts[0].lower(), True)
        elif len(parts) == 3 and parts[0] == "SUPERSEDED" and parts[1] in self.memories:
            self.memories[parts[1]].superseded_by = parts[2]

    def cut_off(self, op: str, target: str | None) -> None:
        """The worker died inside `op` on `target`: its outcome may or may not be stored."""
        expect = self.memories.get(target or "")
        if expect is None:
            return
        if op == "forget":
            expect.archived = None
        elif op == "erase":
            expect.erased = None
        elif op == "supersede":
            expect.supersede_open = True


@dataclass
class Probe:
    """Divergence found before any recovery code ran (what recovery had to repair)."""

    missing_from_index: int = 0
    orphans_in_index: int = 0
    broken_supersede_links: int = 0

    @property
    def needs_repair(self) -> bool:
        return bool(self.missing_from_index or self.orphans_in_index
                    or self.broken_supersede_links)


def probe(p: Paths) -> Probe:
    """Compare table and index as the killed process left them, without repairing (opening a
    `MemoryStore` would already reconcile)."""
    from memory.locking import WriteLock
    from memory.store.lexical import LexicalIndex
    from memory.store.table import MemoryTable, sql_in

    with WriteLock(p.write_lock).hold():
        table = MemoryTable(p.lance)
        table_ids = set(table.scan(columns=["id"]).column("id").to_pylist())
        index_ids = LexicalIndex(p.lexical).all_ids()
        succ = table.scan("supersedes IS NOT NULL", ["id", "supersedes"]).to_pylist()
        olds = [r["supersedes"] for r in succ]
        unmarked = 0
        if olds:
            rows = table.scan(sql_in("id", olds), ["id", "superseded_by"]).to_pylist()
            unmarked = sum(r["superseded_by"] is None for r in rows)
    return Probe(len(table_ids - index_ids), len(index_ids - table_ids), unmarked)


@dataclass
class Findings:
    lost: list[str] = field(default_factory=list)
    resurrected: list[str] = field(default_factory=list)  # hard-erased, yet back
    wrong_state: list[str] = field(default_factory=list)  # text, status or supersede link
    duplicates: int = 0
    unfindable: set[tuple[str, str]] = field(default_factory=set)  # (channel, id)
    adopted: int = 0
    erased_on_disk: list[str] = field(default_factory=list)  # hard-erased, text still in files

    @property
    def ok(self) -> bool:
        return not (self.lost or self.resurrected or self.wrong_state or self.duplicates
                    or self.unfindable or self.erased_on_disk)


def check_rows(mem: Memories, ledger: Ledger) -> tuple[Findings, set[str]]:
    """Presence, state, duplicates, and adoption of unacknowledged memories. Returns the
    findings and the ids present and current enough to be searched for."""
    f = Findings()
    scan = mem.store.table.scan(mem._where(False), ["id", "text", "status", "superseded_by",
                                                   "supersedes", "content_hash"]).to_pylist()
    f.duplicates += len(scan) - len({r["id"] for r in scan})
    f.duplicates += sum(n - 1 for n in Counter(r["content_hash"] for r in scan).values())
    index_docs = mem.store.lexical.count()
    f.duplicates += max(0, index_docs - len(mem.store.lexical.all_ids()))
    rows = {r["id"]: r for r in scan}
    for row in scan:  # stored though the kill came before the acknowledgement
        if row["id"] not in ledger.memories and (m := MARKER_RE.search(row["text"])):
            ledger.memories[row["id"]] = Expect(m.group(1), adopted=True)
            f.adopted += 1
    present: set[str] = set()
    for mid, e in ledger.memories.items():
        row = rows.get(mid)
        if e.erased is None:  # cut off: settle on what recovery left
            e.erased = row is None
        if row is None:
            if not e.erased:
                f.lost.append(mid)
            continue
        if e.erased:
            f.resurrected.append(mid)
            continue
        if e.archived is None:
            e.archived = row["status"] == "archived"
        if e.supersede_open:
            succ = rows.get(row["superseded_by"] or "")
            if succ is not None and succ["supersedes"] == mid:
                e.superseded_by = succ["id"]
            e.supersede_open = False
        want_status = "archived" if e.archived else "active"
        if (row["text"] != content(e.marker)[0] or row["status"] != want_status
                or row["superseded_by"] != e.superseded_by):
            f.wrong_state.append(mid)
            continue
        present.add(mid)
    return f, present


def erased_text_on_disk(p: Paths, ledger: Ledger) -> list[str]:
    """Hard-erased memories whose text is still in a LanceDB file (any version). A hard
    erase promises the text leaves the disk; that must hold even if it was cut off."""
    needles = {f"ticket {e.marker},".encode(): mid
               for mid, e in ledger.memories.items() if e.erased}
    if not needles:
        return []
    found: set[str] = set()
    for path in p.lance.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found.update(mid for needle, mid in needles.items() if needle in data)
    return sorted(found)


def check_channels(mem: Memories, ledger: Ledger, ids: set[str], f: Findings) -> None:
    """Ask both indexes directly (BM25 by marker, nearest neighbours of the stored vector),
    then recall by the memory's own text: it must come back in the fused top k, and be in
    the top k of the semantic, lexical and entity channels (its text holds its meaning, its
    marker and its file). Archived memories are not recalled by design: indexes only."""
    import numpy as np

    from memory.recall import RecallOptions, recall

    store = mem.store
    rows = {m.id: m for m in store.table.get(sorted(ids), with_vector=True)}
    recalled = sorted(i for i in ids if i in rows and not ledger.memories[i].archived)
    # The query texts embedded by the real model in one batched call, not one call each.
    queries = dict(zip(recalled, mem.embedder().embed([rows[i].text for i in recalled])
                       if recalled else [], strict=True))
    opts = RecallOptions(k=TOP_K, include_superseded=True, reinforce=False)
    for mid in sorted(ids):
        e, row = ledger.memories[mid], rows.get(mid)
        if row is None or row.vector is None:
            f.unfindable.add(("vector", mid))
            continue
        if mid not in [i for i, _ in store.lexical.search(mem.project.key, e.marker, TOP_K)]:
            f.unfindable.add(("lexical index", mid))
        near = store.table.vector_search(np.asarray(row.vector), mem._where(False), 3)
        if mid not in [i for i, _ in near]:
            f.unfindable.add(("vector index", mid))
        if mid not in queries:
            continue
        vector = queries[mid]
        hits = recall(store, lambda _texts, v=vector: v[None, :], mem.project.key, row.text,
                      opts)
        hit = next((h for h in hits if h.memory.id == mid), None)
        if hit is None:
            f.unfindable.add(("fused", mid))
            continue
        for channel in ("semantic", "lexical", "entity"):
            if hit.ranks.get(channel, TOP_K + 1) > TOP_K:
                f.unfindable.add((channel, mid))
