"""JSONL export and import. Import is idempotent: an id or a text already present is skipped."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from memory.errors import InputError, MemctlError
from memory.record import Memory, is_valid_id
from memory.service import Memories
from memory.store.table import sql_str

EXPORT_FORMAT = "memctl/1"
BATCH = 128


def export_rows(mem: Memories) -> Iterator[dict[str, Any]]:
    rows = mem.store.table.rows(f"project = {sql_str(mem.project.key)}")
    rows.sort(key=lambda m: m.id)
    for memory in rows:
        yield {"format": EXPORT_FORMAT, **memory.to_public()}


def _time(obj: dict[str, Any], key: str) -> datetime | None:
    """An ISO time from the line, in UTC; absent or null is None, anything else is an error
    (a time outside what the store can read back would break every later read)."""
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InputError(f"{key} must be an ISO date string, not {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value)
        return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise InputError(f"{key}: not an ISO date in range: {value[:40]!r}") from None


def _record(mem: Memories, obj: dict[str, Any], id_map: dict[str, str],
            owners: dict[str, str]) -> Memory:
    memory = mem.prepare(
        obj.get("text"),
        kind=obj.get("kind") or "note",
        title=obj.get("title"),
        tags=obj.get("tags"),
        files=obj.get("files"),
        importance=obj.get("importance"),
        # Whatever the file claims, imported text has not been vouched for here.
        source="import",
        agent=obj.get("agent") if isinstance(obj.get("agent"), str) else None,
        session=obj.get("session") if isinstance(obj.get("session"), str) else None,
        commit_sha=obj.get("commit_sha") if isinstance(obj.get("commit_sha"), str) else None,
        valid_from=_time(obj, "valid_from"),
    )
    given = obj.get("id")
    if isinstance(given, str) and is_valid_id(given):
        owner = owners.get(given)
        if owner is None or owner == mem.project.key:
            memory.id = given  # same id: re-importing the same file is a no-op
        # else: the id belongs to another project's memory (an export imported next to
        # its origin): keep the fresh id and remap links to it.
        id_map[given] = memory.id
    created = _time(obj, "created_at")
    if created:
        memory.created_at = created
    for key in ("supersedes", "superseded_by"):
        if isinstance(obj.get(key), str) and is_valid_id(obj[key]):
            setattr(memory, key, obj[key])
    memory.valid_to = _time(obj, "valid_to")
    if obj.get("status") == "archived":
        memory.status = "archived"
    return memory


def import_lines(mem: Memories, lines: Sequence[str],
                 advance: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Parse every line first (so links can be remapped), then embed and store in batches.
    `advance` is called with the number of lines dealt with."""
    skipped = 0
    errors: list[dict[str, Any]] = []
    pending: list[Memory] = []
    # What is stored already, read once (not two look-ups per line): every id with its
    # project, and this project's content hashes. Records taken from this file join both.
    ids = mem.store.table.scan(None, ["id", "project"])
    owners = dict(zip(ids.column("id").to_pylist(), ids.column("project").to_pylist(),
                      strict=True))
    seen_hashes = mem.live_hashes()
    id_map: dict[str, str] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            if advance:
                advance(1)
            continue
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict):
                raise MemctlError("expected a JSON object")
            memory = _record(mem, obj, id_map, owners)
        except (json.JSONDecodeError, RecursionError, MemctlError) as exc:
            errors.append({"line": number, "error": str(exc)[:200]})
            if advance:
                advance(1)
            continue
        if memory.content_hash in seen_hashes or memory.id in owners:
            skipped += 1
            if advance:
                advance(1)
            continue
        seen_hashes.add(memory.content_hash)
        owners[memory.id] = mem.project.key
        pending.append(memory)
    imported = {m.id for m in pending}
    for m in pending:  # links between records of this file follow their new ids
        m.supersedes = _link(id_map, imported, m.supersedes)
        m.superseded_by = _link(id_map, imported, m.superseded_by)
    mem.insert_many(pending, batch=BATCH, progress=advance)
    return {"imported": len(pending), "skipped": skipped, "errors": errors}


def _link(id_map: dict[str, str], imported: set[str], target: str | None) -> str | None:
    """A supersede link is kept only between records imported together. Import never changes
    what is stored, and a link to a stored memory would: `doctor` completes half links by
    marking the target superseded (and the target might be another project's)."""
    new = id_map.get(target or "")
    return new if new in imported else None
