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
        if (candidate / ".git").exists():
            return candidate
    return None


def _from_path(value: str) -> Project:
    path = Path(value).expanduser()
    if not path.exists():
        raise ProjectError(f"project path does not exist: {value}")
    if not path.is_dir():
        raise ProjectError(f"project path is not a directory: {value}")
    root = git_root(path) or path.resolve()
    return Project(key=str(root), name=root.name or str(root), root=root)


def _from_name(value: str) -> Project:
    name = value.strip()
    if not name:
        raise ProjectError("project name is empty")
    if len(name) > MAX_PROJECT_LEN:
        raise ProjectError(f"project name is longer than {MAX_PROJECT_LEN} characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise ProjectError("project name contains control characters")
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
        return Project(key=str(root), name=root.name, root=root)
    return Project(key=DEFAULT_PROJECT, name=DEFAULT_PROJECT)
