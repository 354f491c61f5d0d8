"""Where memctl keeps its data, and the few settings read from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# LanceDB's Rust core logs warnings (e.g. "No existing dataset") straight to stderr;
# a CLI or an MCP stdio server must not print them. Set before lancedb is imported.
os.environ.setdefault("LANCEDB_LOG", "error")
os.environ.setdefault("LANCE_LOG", "error")


def default_home() -> Path:
    """`MEMCTL_HOME`, else `$XDG_DATA_HOME/memctl`, else `~/.local/share/memctl`."""
    explicit = os.environ.get("MEMCTL_HOME")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "memctl"


@dataclass(frozen=True)
class Paths:
    """The layout of one data directory."""

    home: Path

    @property
    def lance(self) -> Path:
        return self.home / "lance"

    @property
    def lexical(self) -> Path:
        return self.home / "lexical"

    @property
    def models(self) -> Path:
        return self.home / "models"

    @property
    def write_lock(self) -> Path:
        return self.home / "write.lock"

    @property
    def ann_lock(self) -> Path:
        return self.home / "ann-build.lock"

    def ensure(self) -> Paths:
        for path in (self.home, self.lance, self.lexical, self.models):
            path.mkdir(parents=True, exist_ok=True)
        # Memories can hold private project knowledge: keep the directory owner-only.
        os.chmod(self.home, 0o700)
        return self


def paths(home: Path | None = None) -> Paths:
    return Paths((home or default_home()).expanduser().resolve())
