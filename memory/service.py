"""What memctl does with memories, independent of how it is asked (CLI, MCP, hooks).

Every entry point goes through `Memories`, so validation, redaction, dedup and quarantine
happen in one place.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from memory import contradiction, sanitize
from memory.entities import extract_entities
from memory.errors import InputError, NotFound
from memory.llm.base import Embedder
from memory.project import Project
from memory.recall import Hit, RecallOptions, recall
from memory.record import KINDS, SOURCES, Memory, is_valid_id, new_id, utcnow
from memory.redact import redact
from memory.scoring import trust as trust_mod
from memory.store import MemoryStore
from memory.store.snapshot import Filter
from memory.store.table import LIGHT_COLUMNS, sql_str
from memory.textutil import content_hash

NEAR_DUPLICATE_COSINE = 0.9
SIMILAR_LIMIT = 3
# A new memory is linked to existing ones this similar (any kind); links feed the entity /
# graph channel's spreading activation.
LINK_COSINE = 0.7
MAX_LINKS = 5
RELATED_LIMIT = 8  # nearest memories a write compares itself with
# Neighbours at least this close are checked for a contradiction. The text rules in
# memory.contradiction are the strict part (near-identical statements); MiniLM puts a
# statement and its negation at only ~0.7-0.85, so a higher gate would miss most of them.
CONTRADICTION_COSINE = LINK_COSINE


@dataclass
class Similar:
    id: str
    similarity: float
    kind: str
    snippet: str


@dataclass
class RememberResult:
    id: str
    status: str  # stored | duplicate | quarantined
    memory: Memory
    duplicate_of: str | None = None
    redactions: list[str] = field(default_factory=list)
    similar: list[Similar] = field(default_factory=list)
    contradictions: list[contradiction.Contradiction] = field(default_factory=list)

    def to_public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "duplicate_of": self.duplicate_of,
            "redactions": self.redactions,
            "similar": [s.__dict__ for s in self.similar],
            "contradictions": [c.__dict__ for c in self.contradictions],
        }


class LazyEmbedder:
    """Loads the embedding model once, on first use, thread-safely."""

    def __init__(self, factory: Callable[[], Embedder]) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._model: Embedder | None = None

    def __call__(self) -> Embedder:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = self._factory()
        return self._model

    @property
    def loaded(self) -> bool:
        return self._model is not None


def _check_choice(value: str, allowed: Sequence[str], what: str) -> str:
    if value not in allowed:
        raise InputError(f"unknown {what} {value!r}; choose one of: {', '.join(allowed)}")
    return value


def check_id(value: object) -> str:
    if not isinstance(value, str) or not is_valid_id(value.strip().lower()):
        raise InputError(f"not a memory id: {str(value)[:40]!r} (ids are 16 hex characters)")
    return value.strip().lower()


def snippet(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


class Memories:
    def __init__(self, store: MemoryStore, embedder: Callable[[], Embedder],
                 project: Project) -> None:
        self.store = store
        self.embedder = embedder
        self.project = project

    # -- helpers -----------------------------------------------------------------------
    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.embedder().embed(list(texts))

    def _where(self, current_only: bool = True) -> str:
        where = f"project = {sql_str(self.project.key)}"
        if current_only:
            where += " AND status = 'active' AND superseded_by IS NULL"
        return where

    def get(self, memory_id: str, with_vector: bool = False) -> Memory:
        found = self.store.table.get([check_id(memory_id)], with_vector)
        if not found or found[0].project != self.project.key:
            raise NotFound(f"no memory {memory_id} in project {self.project.name}")
        return found[0]

    def history(self, memory: Memory) -> list[Memory]:
        """The supersede chain around `memory`, oldest first."""
        chain = [memory]
        seen = {memory.id}
        back = memory.supersedes
        while back and back not in seen:
            older = self.store.table.get([back])
            if not older or older[0].project != memory.project:  # links never cross projects
                break
            chain.insert(0, older[0])
            seen.add(back)
            back = older[0].supersedes
        forward = memory.superseded_by
        while forward and forward not in seen:
            newer = self.store.table.get([forward])
            if not newer or newer[0].project != memory.project:
                break
            chain.append(newer[0])
            seen.add(forward)
            forward = newer[0].superseded_by
        return chain

    # -- writes ------------------------------------------------------------------------
    def prepare(
        self,
        text: object,
        *,
        kind: str = "note",
        title: str | None = None,
        tags: object = None,
        files: object = None,
        importance: float | None = None,
        source: str = "user",
        agent: str | None = None,
        session: str | None = None,
        commit_sha: str | None = None,
        valid_from: datetime | None = None,
        entities: Iterable[str] = (),
        supersedes: str | None = None,
    ) -> Memory:
        """Validate, redact and build a record (no vector yet, nothing written)."""
        body = sanitize.clean_text(text)
        _check_choice(kind, KINDS, "kind")
        _check_choice(source, SOURCES, "source")
        if importance is None:
            importance = 0.5
        if not isinstance(importance, int | float) or not 0.0 <= float(importance) <= 1.0:
            raise InputError("importance must be a number between 0 and 1")
        red = redact(body)
        clean_title = None
        redactions = [r.kind for r in red.redactions]
        if title:
            title_red = redact(sanitize.clean_text(title, "title", 300))
            clean_title = title_red.text
            redactions += [r.kind for r in title_red.redactions]
        file_list = sanitize.clean_files(files)
        ents = list(dict.fromkeys([*entities, *file_list, *extract_entities(red.text)]))[:48]
        now = utcnow()
        alpha, beta = trust_mod.prior(source)
        quarantined = trust_mod.should_quarantine(red.text, source)
        return Memory(
            id=new_id(now),
            project=self.project.key,
            kind=kind,
            text=red.text,
            title=clean_title,
            content_hash=content_hash(red.text),
            created_at=now,
            valid_from=valid_from or now,
            source=source,
            tags=sanitize.clean_tags(tags),
            entities=ents,
            files=file_list,
            agent=agent,
            session=session,
            commit_sha=commit_sha,
            supersedes=supersedes,
            status="quarantined" if quarantined else "active",
            importance=float(importance),
            trust_alpha=alpha,
            trust_beta=beta,
            updated_at=now,
            redactions=sorted(set(redactions)),
        )

    def find_duplicate(self, memory: Memory) -> Memory | None:
        rows = self.store.table.rows(
            f"{self._where(False)} AND content_hash = {sql_str(memory.content_hash)}"
            " AND status != 'archived'", limit=1)
        return rows[0] if rows else None

    def live_hashes(self) -> set[str]:
        """Content hashes of this project's memories that `find_duplicate` would match (one
        scan, for bulk imports)."""
        table = self.store.table.scan(f"{self._where(False)} AND status != 'archived'",
                                      ["content_hash"])
        return set(table.column("content_hash").to_pylist())

    def related(self, vector: np.ndarray, kind: str
                ) -> tuple[list[Similar], list[str], list[tuple[Memory, float]]]:
        """Near-duplicates of the same kind (to report), links to related memories, and the
        related memories themselves with their similarity."""
        snap = self.store.snapshot()
        if snap.vectors is not None:
            # The table is small enough to be searched flat: the snapshot already holds it.
            hits = [h for h in snap.nearest(vector, Filter(self.project.key), RELATED_LIMIT)
                    if h[1] >= LINK_COSINE]
            found = snap.take([i for i, _ in hits], LIGHT_COLUMNS).to_pylist()
            rows = {m.id: m for m in map(Memory.from_row, found)}
        else:
            hits = [h for h in self.store.table.vector_search(vector, self._where(),
                                                              RELATED_LIMIT)
                    if h[1] >= LINK_COSINE]
            rows = {m.id: m for m in self.store.table.get([h[0] for h in hits])}
        similar = [Similar(i, round(sim, 4), rows[i].kind, snippet(rows[i].text))
                   for i, sim in hits
                   if i in rows and sim >= NEAR_DUPLICATE_COSINE and rows[i].kind == kind]
        close = [(rows[i], sim) for i, sim in hits if i in rows]
        return similar[:SIMILAR_LIMIT], [i for i, _ in hits][:MAX_LINKS], close

    def _contradict(self, memory: Memory, close: list[tuple[Memory, float]]
                    ) -> list[contradiction.Contradiction]:
        """Check a new memory against its closest neighbours; the less trusted side of each
        conflict receives a CONTRADICTED event. The new memory's trust changes here (it is not
        stored yet); call `_lower_contradicted` for the neighbours once it is stored."""
        neighbours = [m for m, sim in close
                      if sim >= CONTRADICTION_COSINE and m.id != memory.supersedes]
        found = contradiction.check(memory, neighbours)
        # One event for the new memory however many neighbours it contradicts: they are
        # usually near-copies of one statement, not independent evidence.
        if any(c.lowered == memory.id for c in found):
            memory.trust_alpha, memory.trust_beta = trust_mod.update(
                memory.trust_alpha, memory.trust_beta, trust_mod.TrustEvent.CONTRADICTED)
        return found

    def _lower_contradicted(self, found: list[contradiction.Contradiction],
                            close: list[tuple[Memory, float]]) -> None:
        rows = {m.id: m for m, _ in close}
        for c in found:
            if c.lowered == c.id:
                old = rows[c.id]
                alpha, beta = trust_mod.update(old.trust_alpha, old.trust_beta,
                                               trust_mod.TrustEvent.CONTRADICTED)
                self.store.update([old.id], {"trust_alpha": alpha, "trust_beta": beta,
                                             "updated_at": utcnow()})

    def remember(self, text: object, **kwargs: Any) -> RememberResult:
        supersedes = kwargs.pop("supersedes", None)
        old = self.get(supersedes) if supersedes else None
        memory = self.prepare(text, supersedes=old.id if old else None, **kwargs)
        duplicate = self.find_duplicate(memory)
        if duplicate is not None and old is None:
            return RememberResult(duplicate.id, "duplicate", duplicate, duplicate.id,
                                  memory.redactions)
        vector = self._embed([embed_text(memory)])[0]
        memory.vector = vector.tolist()
        similar, memory.links, close = self.related(vector, memory.kind)
        if old is not None:
            similar = []  # it replaces a memory on purpose: no near-duplicate warning
            memory.links = [old.id, *(i for i in memory.links if i != old.id)][:MAX_LINKS]
        found = self._contradict(memory, close)
        self.store.insert([memory])
        if old is not None:
            self.store.supersede(old.id, memory.id, memory.created_at)
        self._lower_contradicted(found, close)
        status = "quarantined" if memory.status == "quarantined" else "stored"
        return RememberResult(memory.id, status, memory, None, memory.redactions, similar,
                              found)

    def insert_many(self, memories: list[Memory], batch: int = 256,
                    progress: Callable[[int], None] | None = None) -> None:
        """Embed and store prepared records in batches (import, capture back-fill, bench).
        Each record's vector is dropped once stored: callers hold every record, and as a
        list a vector takes 12 KB (1.2 GB for an import of 100,000 memories)."""
        for start in range(0, len(memories), batch):
            chunk = memories[start : start + batch]
            vectors = self._embed([embed_text(m) for m in chunk])
            for memory, vector in zip(chunk, vectors, strict=True):
                memory.vector = vector.tolist()
            self.store.insert(chunk)
            for memory in chunk:
                memory.vector = None
            if progress:
                progress(len(chunk))

    def forget(self, memory_id: str, hard: bool = False) -> Memory:
        memory = self.get(memory_id)
        if hard:
            self.store.erase([memory.id])
        else:
            now = utcnow()
            self.store.update([memory.id], {"status": "archived", "valid_to": now,
                                            "updated_at": now})
        return memory

    def feedback(self, memory_id: str, verdict: str) -> Memory:
        _check_choice(verdict, ("helpful", "wrong", "outdated", "used"), "verdict")
        memory = self.get(memory_id)
        alpha, beta = trust_mod.update(memory.trust_alpha, memory.trust_beta, verdict)
        now = utcnow()
        values: dict[str, Any] = {"trust_alpha": alpha, "trust_beta": beta, "updated_at": now}
        if verdict == "outdated" and memory.valid_to is None:
            values["valid_to"] = now
        self.store.update([memory.id], values)
        return self.get(memory.id)

    def release(self, memory_id: str) -> Memory:
        memory = self.get(memory_id)
        if memory.status != "quarantined":
            raise InputError(f"memory {memory.id} is not quarantined")
        self.store.update([memory.id], {"status": "active", "updated_at": utcnow()})
        return self.get(memory.id)

    # -- reads -------------------------------------------------------------------------
    def search(self, query: object, options: RecallOptions | None = None,
               timings: dict[str, float] | None = None) -> list[Hit]:
        text = sanitize.clean_text(query, "query", 4_000)
        return recall(self.store, self._embed, self.project.key, text,
                      options or RecallOptions(), timings)

    def list(self, *, kind: str | None = None, status: str | None = "active",
             include_superseded: bool = False, limit: int = 50) -> list[Memory]:
        where = self._where(False)
        if status:
            where += f" AND status = {sql_str(status)}"
        if kind:
            where += f" AND kind = {sql_str(_check_choice(kind, KINDS, 'kind'))}"
        if not include_superseded:
            where += " AND superseded_by IS NULL"
        rows = self.store.table.rows(where)
        rows.sort(key=lambda m: m.created_at, reverse=True)
        return rows[:limit] if limit > 0 else rows

    def stats(self) -> dict[str, Any]:
        rows = self.store.table.scan(self._where(False), ["kind", "status", "superseded_by",
                                                          "source"]).to_pylist()
        by_kind: dict[str, int] = {}
        by_status: dict[str, int] = {}
        by_source: dict[str, int] = {}
        superseded = 0
        for r in rows:
            by_kind[r["kind"]] = by_kind.get(r["kind"], 0) + 1
            by_status[r["status"]] = by_status.get(r["status"], 0) + 1
            by_source[r["source"]] = by_source.get(r["source"], 0) + 1
            superseded += r["superseded_by"] is not None
        return {"project": self.project.key, "total": len(rows), "by_kind": by_kind,
                "by_status": by_status, "by_source": by_source, "superseded": superseded}


def embed_text(memory: Memory) -> str:
    return f"{memory.title}\n{memory.text}" if memory.title else memory.text
