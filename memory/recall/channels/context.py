"""Context channel: memories about the files (and their directories) the caller works on."""

from __future__ import annotations

from pathlib import PurePosixPath

from memory.recall.channels import Query, Ranked
from memory.store import MemoryStore
from memory.store.table import sql_str


def _expand(paths: list[str]) -> dict[str, float]:
    """Each path, then its parent directories with a smaller weight."""
    weights: dict[str, float] = {}
    for raw in paths:
        path = PurePosixPath(raw.replace("\\\\", "/").lstrip("./"))
        weights[str(path)] = max(weights.get(str(path), 0.0), 1.0)
        for depth, parent in enumerate(path.parents, start=1):
            if str(parent) in (".", ""):
                break
            weights[str(parent)] = max(weights.get(str(parent), 0.0), 0.5 / depth)
    return weights


def search(store: MemoryStore, q: Query) -> Ranked:
    if not q.files:
        return []
    weights = _expand(q.files)
    rows = store.table.scan(
        f"({q.where}) AND array_length(files) > 0", ["id", "files", "entities"]
    ).to_pylist()
    scored: dict[str, float] = {}
    for row in rows:
        best = 0.0
        for f in [*(row["files"] or []), *(row["entities"] or [])]:
            path = PurePosixPath(f.replace("\\", "/").lstrip("./"))
            # The memory's file, then its directories: a note about src/config/parse.py
            # concerns someone working on src/config/other.py, less so than the file itself.
            for depth, anc in enumerate((path, *path.parents)):
                if str(anc) in weights:
                    best = max(best, weights[str(anc)] * 0.8**depth)
                    break
        if best > 0:
            scored[row["id"]] = best
    return sorted(scored.items(), key=lambda kv: (-kv[1], kv[0]))[: q.limit]


__all__ = ["search", "sql_str"]
