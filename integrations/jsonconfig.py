"""Safe edits of other tools' configuration files (JSON objects, and our own text files).

An edit is planned first as a `Change` (path, text before, text after) and applied only when
asked, so `--dry-run` can show a unified diff of exactly what would be written. Rules:

- a file that is not a JSON object is refused (`InputError`), never overwritten;
- a rewrite keeps every key it does not touch, in order, and the file's indentation, so
  re-running an install yields byte-identical files and an uninstall restores the original
  bytes of a file that was formatted as indented JSON;
- writes are atomic (temporary file in the same directory, fsync, rename) and keep the mode of
  the file they replace;
- a file left holding nothing (`{}`) after our entries are removed is deleted, and so are the
  directories we would have created, once empty.

Pure functions apart from `read_json`, `read_text` and `apply`.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memory.errors import InputError

JsonObject = dict[str, Any]
DEFAULT_INDENT = 2


@dataclass(frozen=True)
class Change:
    """One file's planned edit. `after` None deletes the file; `cleanup` lists directories
    to remove afterwards if they are then empty (deepest first)."""

    path: Path
    before: str | None
    after: str | None
    cleanup: tuple[Path, ...] = ()

    @property
    def changed(self) -> bool:
        return self.before != self.after

    @property
    def action(self) -> str:
        if not self.changed:
            return "unchanged"
        if self.before is None:
            return "create"
        return "delete" if self.after is None else "update"

    def diff(self) -> str:
        """A unified diff of the edit ('' when nothing changes)."""
        if not self.changed:
            return ""
        lines = difflib.unified_diff(
            (self.before or "").splitlines(keepends=True),
            (self.after or "").splitlines(keepends=True),
            fromfile=str(self.path) if self.before is not None else "/dev/null",
            tofile=str(self.path) if self.after is not None else "/dev/null",
        )
        return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
                       for line in lines)

    def to_public(self) -> dict[str, Any]:
        return {"path": str(self.path), "action": self.action}


def read_text(path: Path) -> str | None:
    """The file's text, or None if it does not exist."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        raise InputError(f"{path} is not UTF-8 text; not touching it") from None
    except IsADirectoryError:
        raise InputError(f"{path} is a directory, expected a file") from None


def parse_object(text: str | None, path: Path) -> JsonObject:
    """`text` parsed as a JSON object ({} for a missing or blank file)."""
    if text is None or not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: "
                         f"{exc.msg}); fix or move it, nothing was written") from None
    if not isinstance(value, dict):
        raise InputError(f"{path} holds a JSON {type(value).__name__}, not an object; "
                         "nothing was written")
    return value


def read_json(path: Path) -> tuple[str | None, JsonObject]:
    text = read_text(path)
    return text, parse_object(text, path)


_INDENTED = re.compile(r"^\{\s*\n([ \t]+)\"", re.S)


def indent_of(text: str | None) -> int | str:
    """The indentation unit of a JSON document: what its first key is indented by."""
    match = _INDENTED.match(text.lstrip() if text else "")
    if not match:
        return DEFAULT_INDENT
    unit = match.group(1)
    return unit if "\t" in unit else len(unit)


def dump(data: JsonObject, like: str | None = None) -> str:
    """`data` as JSON text, indented like `like` (the file's current text), newline-ended
    unless `like` was a non-empty document without one."""
    text = json.dumps(data, indent=indent_of(like), ensure_ascii=False)
    ends = like is None or not like.strip() or like.endswith("\n")
    return text + "\n" if ends else text


def plan_json(path: Path, edit: Callable[[JsonObject], JsonObject],
              cleanup: Iterable[Path] = ()) -> Change:
    """The change that applies `edit` (a pure function on a deep copy) to the JSON file at
    `path`. The file is left byte-for-byte alone when `edit` changes nothing, and deleted
    when `edit` leaves it empty (it held nothing but our entries)."""
    before, data = read_json(path)
    after_data = edit(json.loads(json.dumps(data)))
    if after_data == data and before is not None:
        return Change(path, before, before)
    if not after_data:
        if path.is_symlink():  # a managed dotfile: empty it, keep the link and its target
            return Change(path, before, "{}\n")
        return Change(path, before, None, tuple(cleanup))
    return Change(path, before, dump(after_data, before))


def plan_text(path: Path, text: str | None, cleanup: Iterable[Path] = ()) -> Change:
    """The change that makes the file at `path` hold `text` (None: delete it)."""
    return Change(path, read_text(path), text, tuple(cleanup) if text is None else ())


def _new_file_mode() -> int:
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: Path, text: str) -> None:
    """Replace `path` with `text` in one step; a symlink is followed (its target is written)
    and an existing file keeps its mode."""
    path = path.resolve() if path.is_symlink() else path
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = _new_file_mode()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def apply(changes: Iterable[Change]) -> None:
    for change in changes:
        if not change.changed:
            continue
        if change.after is None:
            change.path.unlink(missing_ok=True)
            for directory in change.cleanup:
                try:
                    directory.rmdir()  # only succeeds when empty
                except OSError:
                    break
        else:
            atomic_write(change.path, change.after)


def prune_empty(container: JsonObject, key: str) -> None:
    """Drop `container[key]` if it is now an empty object or list."""
    if key in container and container[key] in ({}, []):
        del container[key]
