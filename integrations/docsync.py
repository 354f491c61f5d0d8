"""Keep a project's `doc` memories equal to its knowledge files, one file at a time.

A file's memories are its chunks (see `docs.split_document`), stored with source `watch`,
`files=[path]` and the chunk's title, which is unique within the file and so serves as its
key. Syncing compares the file with its current memories: an unchanged chunk is left alone,
a changed one is superseded (history stays queryable), a vanished one is archived, a new one
is stored. Syncing twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from integrations import docs
from memory import sanitize
from memory.record import Memory
from memory.service import Memories
from memory.store.table import sql_str

SOURCE = "watch"
KIND = "doc"
# Files agents read as instructions matter more than general documentation.
AGENT_FILE_IMPORTANCE = 0.7
DOC_IMPORTANCE = 0.5
_CURRENT = (f" AND kind = '{KIND}' AND source = '{SOURCE}' AND superseded_by IS NULL"
            " AND status != 'archived'")


@dataclass
class SyncResult:
    """What syncing one file did."""

    path: str
    stored: list[str] = field(default_factory=list)
    updated: list[tuple[str, str]] = field(default_factory=list)  # (old id, new id)
    archived: list[str] = field(default_factory=list)
    unchanged: int = 0
    quarantined: list[str] = field(default_factory=list)
    skipped: str | None = None  # why the file is not synced (its memories are archived)
    error: str | None = None

    @property
    def changed(self) -> bool:
        return bool(self.stored or self.updated or self.archived)

    @property
    def worth_telling(self) -> bool:
        return self.changed or self.skipped is not None or self.error is not None

    def summary(self) -> str:
        """One line for people, e.g. `docs/setup.md: 1 new, 2 updated`."""
        if self.error:
            return f"{self.path}: failed: {self.error}"
        counts = [f"{n} {what}" for n, what in ((len(self.stored), "new"),
                                                 (len(self.updated), "updated"),
                                                 (len(self.archived), "archived")) if n]
        if self.skipped:
            counts.insert(0, f"skipped ({self.skipped})")
        if self.quarantined:
            counts.append(f"{len(self.quarantined)} quarantined (see `memctl list "
                          "--quarantined`)")
        return f"{self.path}: {', '.join(counts) or 'unchanged'}"

    def to_public(self) -> dict[str, Any]:
        return {"event": "sync", "path": self.path, "stored": self.stored,
                "updated": [{"old": o, "new": n} for o, n in self.updated],
                "archived": self.archived, "unchanged": self.unchanged,
                "quarantined": self.quarantined, "skipped": self.skipped, "error": self.error}


def stored_path(rel: str) -> str:
    """`rel` as the store keeps it in `files` (NFC, no control characters)."""
    return sanitize.clean_text(rel, "file path", 1024)


def current(mem: Memories, rel: str) -> list[Memory]:
    """The file's memories that are neither superseded nor archived."""
    return mem.store.table.rows(
        f"{mem._where(False)}{_CURRENT} AND array_has(files, {sql_str(stored_path(rel))})")


def current_by_file(mem: Memories) -> dict[str, list[Memory]]:
    """Every current watched memory of the project, by file: one query for a whole scan."""
    by_file: dict[str, list[Memory]] = {}
    for m in mem.store.table.rows(f"{mem._where(False)}{_CURRENT}"):
        if m.files:
            by_file.setdefault(m.files[0], []).append(m)
    return by_file


def _body(text: str) -> str:
    return text.split("\n\n", 1)[-1]


def _latest_by_title(rows: list[Memory], result: SyncResult, mem: Memories
                     ) -> dict[str | None, Memory]:
    """One current memory per title; extras (left by a crash mid-sync) are archived."""
    by_title: dict[str | None, Memory] = {}
    for m in sorted(rows, key=lambda r: r.created_at, reverse=True):
        if m.title in by_title:
            mem.forget(m.id)
            result.archived.append(m.id)
        else:
            by_title[m.title] = m
    return by_title


def sync_chunks(mem: Memories, rel: str, chunks: list[docs.Chunk],
                rows: list[Memory] | None = None) -> SyncResult:
    """Make the file's current memories equal to `chunks` (`rows`: the file's current
    memories, when the caller has them already)."""
    result = SyncResult(rel)
    before = _latest_by_title(current(mem, rel) if rows is None else rows, result, mem)
    name = PurePosixPath(rel).name
    options: dict[str, Any] = {
        "kind": KIND, "files": [rel], "source": SOURCE,
        "importance": AGENT_FILE_IMPORTANCE if name in docs.AGENT_FILES else DOC_IMPORTANCE}
    fresh: list[tuple[docs.Chunk, Memory]] = []
    changed: list[tuple[Memory, docs.Chunk]] = []
    seen: set[str | None] = set()
    for chunk in chunks:
        same = before.get(chunk.title)
        if same is not None and same.text == chunk.text:  # most chunks: no need to prepare
            del before[chunk.title]
            seen.add(chunk.title)
            result.unchanged += 1
            continue
        prepared = mem.prepare(chunk.text, title=chunk.title, **options)
        if prepared.title in seen:  # two headings that redaction made identical
            continue
        seen.add(prepared.title)
        old = before.pop(prepared.title, None)
        if old is None:
            fresh.append((chunk, prepared))
        elif old.text == prepared.text:
            result.unchanged += 1
        else:
            changed.append((old, chunk))
    # A heading renamed over an unchanged body: a successor, not an archive plus a stranger.
    gone = list(before.values())
    by_body: dict[str, Memory] = {}
    for m in gone:
        by_body.setdefault(_body(m.text), m)
    new: list[Memory] = []
    for chunk, prepared in fresh:
        old = by_body.pop(_body(prepared.text), None)
        if old is None:
            new.append(prepared)
        else:
            gone.remove(old)
            changed.append((old, chunk))
    for old, chunk in changed:
        stored = mem.remember(chunk.text, title=chunk.title, supersedes=old.id, **options)
        result.updated.append((old.id, stored.id))
        if stored.status == "quarantined":
            result.quarantined.append(stored.id)
    if new:
        mem.insert_many(new)  # one batch: one embedding call, one index commit
        result.stored = [m.id for m in new]
        result.quarantined += [m.id for m in new if m.status == "quarantined"]
    for old in gone:
        mem.forget(old.id)
        result.archived.append(old.id)
    return result


def archive_file(mem: Memories, rel: str, reason: str | None = None,
                 rows: list[Memory] | None = None) -> SyncResult:
    result = SyncResult(rel, skipped=reason)
    for m in current(mem, rel) if rows is None else rows:
        mem.forget(m.id)
        result.archived.append(m.id)
    return result


def sync_file(mem: Memories, root: Path, rel: str, scope: docs.Scope,
              is_ignored: bool = False, rows: list[Memory] | None = None) -> SyncResult:
    """Sync one file (POSIX path relative to `root`) with the store. A missing, ignored or
    unreadable file has its memories archived."""
    if is_ignored:
        return archive_file(mem, rel, rows=rows)
    text = docs.read_doc(root, rel)
    if isinstance(text, docs.Skip):
        return archive_file(mem, rel, text.reason, rows)
    if text is None:
        return archive_file(mem, rel, rows=rows)
    alias = _alias_of(root, rel, scope)
    if alias is not None:
        return archive_file(mem, rel, f"the same file as {alias}", rows)
    return sync_chunks(mem, rel, docs.split_document(text, rel), rows)


def _alias_of(root: Path, rel: str, scope: docs.Scope) -> str | None:
    """The path a link points to when that file is synced in its own right (CLAUDE.md ->
    AGENTS.md): one copy of the text is enough."""
    real = (root / rel).resolve()
    base = root.resolve()
    if real == base / rel:
        return None
    target = real.relative_to(base).as_posix()
    return target if scope.covers(target) else None


def attempt(rel: str, sync: Callable[[], SyncResult]) -> SyncResult:
    """Run one file's sync; a failure becomes that file's error, so the others still sync
    and a long-running watcher keeps going."""
    try:
        return sync()
    except Exception as exc:
        return SyncResult(rel, error=f"{type(exc).__name__}: {exc}"[:500])


def scan(mem: Memories, root: Path, scope: docs.Scope, prefix: str = "",
         should_stop: Callable[[], bool] = lambda: False,
         progress: Callable[[int, int], None] | None = None) -> Iterator[SyncResult]:
    """Sync every knowledge file under `prefix` (a folder relative to `root`, "" for all),
    and archive the memories of files that are gone, ignored or out of reach. Files that
    still exist but are out of `scope` (watched by another command line) are left alone."""

    def under(rel: str) -> bool:
        return not prefix or rel == prefix or rel.startswith(prefix + "/")

    listed = [r for r in docs.list_files(root, prefix) if under(r) and scope.covers(r)]
    rows = current_by_file(mem)
    # The store keeps paths cleaned (NFC...): compare in that form, or a file named in NFD
    # would look gone on every scan.
    names = {r: stored_path(r) for r in listed}
    known = sorted(r for r in set(rows) - set(names.values()) if under(r))
    stale = [r for r in known if scope.covers(r) or not (root / r).exists()]
    todo = [(r, False) for r in listed] + [(r, True) for r in stale]
    for done, (rel, gone) in enumerate(todo, start=1):
        if should_stop():
            return
        if gone:
            yield attempt(rel, lambda r=rel: archive_file(mem, r, rows=rows.get(r, [])))
        else:
            yield attempt(rel, lambda r=rel: sync_file(mem, root, r, scope,
                                                       rows=rows.get(names[r], [])))
        if progress is not None:
            progress(done, len(todo))


@dataclass
class Totals:
    """What a scan did, summed over files."""

    files: int = 0
    new: int = 0
    updated: int = 0
    archived: int = 0
    unchanged: int = 0
    skipped: int = 0
    errors: int = 0

    def add(self, r: SyncResult) -> None:
        self.files += 1
        self.new += len(r.stored)
        self.updated += len(r.updated)
        self.archived += len(r.archived)
        self.unchanged += r.unchanged
        self.skipped += r.skipped is not None
        self.errors += r.error is not None

    @property
    def sections(self) -> int:
        return self.new + self.updated + self.unchanged

    def summary(self) -> str:
        text = (f"{self.files} files, {self.sections} sections: {self.new} new, "
                f"{self.updated} updated, {self.archived} archived")
        extra = [f"{n} {what}" for n, what in ((self.skipped, "skipped"),
                                               (self.errors, "failed")) if n]
        return text + "".join(f", {e}" for e in extra)

    def to_public(self) -> dict[str, int]:
        return {**self.__dict__, "sections": self.sections}
