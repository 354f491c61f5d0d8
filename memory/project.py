"""Which project a command acts on.

Order: an explicit `--project`, then `MEMCTL_PROJECT`, then the git root of the working
directory (keyed by its real path, so two repos called `api` never share memories),
then `default`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from memory.errors import InputError

DEFAULT_PROJECT = "default"
MAX_PROJECT_LEN = 512


class ProjectError(InputError):
    """An unusable project name or path."""


@dataclass(frozen=True)
class Project:
    key: str  # what is stored in every record's `project` column
    name: str  # short label for people
    root: Path | None = None


def git_root(start: Path) -> Path | None:
    """Walk up from `start` to the directory holding `.git` (a dir, or a file for worktrees)."""
    current = start.resolve()
    for candidate in (current, *current.parents):
        try:
            if (candidate / ".git").exists():
                return candidate
        except OSError:  # an unreadable parent directory: no repository we can use
            continue
    return None


def _text(value: str) -> str:
    """A path as storable text. The OS hands out undecodable bytes in file names as lone
    surrogates, which no UTF-8 column accepts: they become `\\xNN` escapes."""
    try:
        return os.fsencode(value).decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate the OS layer did not produce
        return value.encode("utf-8", "backslashreplace").decode("utf-8")


def _at_root(root: Path) -> Project:
    key = _text(str(root))
    return Project(key=key, name=_text(root.name) or key, root=root)


def _from_path(value: str) -> Project:
    shown = _text(value)[:300]
    try:
        path = Path(value).expanduser()
        exists, is_dir = path.exists(), path.is_dir()
        resolved = path.resolve() if is_dir else path
    except (OSError, RuntimeError, ValueError) as exc:  # too long, no such user, NUL byte...
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise ProjectError(f"unusable project path {shown}: {reason}") from None
    if not exists:
        raise ProjectError(f"project path does not exist: {shown}")
    if not is_dir:
        raise ProjectError(f"project path is not a directory: {shown}")
    return _at_root(git_root(resolved) or resolved)


def _from_name(value: str) -> Project:
    name = value.strip()
    if not name:
        raise ProjectError("project name is empty")
    if len(name) > MAX_PROJECT_LEN:
        raise ProjectError(f"project name is longer than {MAX_PROJECT_LEN} characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise ProjectError("project name contains control characters")
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in name):
        # Undecodable bytes (from argv or the environment): refused rather than mapped, so two
        # different byte strings can never name the same project.
        raise ProjectError("project name is not valid UTF-8")
    return Project(key=name, name=name)


def looks_like_path(value: str) -> bool:
    return value.startswith((".", "~", "/")) or "/" in value or os.sep in value


def resolve_project(explicit: str | None = None, cwd: Path | None = None) -> Project:
    """Resolve the project for a command. A value that looks like a path names a directory."""
    for value in (explicit, os.environ.get("MEMCTL_PROJECT")):
        if value is not None and value != "":
            return _from_path(value) if looks_like_path(value) else _from_name(value)
    root = git_root(cwd or Path.cwd())
    if root is not None:
        return _at_root(root)
    return Project(key=DEFAULT_PROJECT, name=DEFAULT_PROJECT)
