"""Retrieval channels. Each returns ids ranked best first, with the channel's own scores."""

from __future__ import annotations

from dataclasses import dataclass, field

from memory.store.snapshot import Filter, Snapshot

Ranked = list[tuple[str, float]]


@dataclass
class Query:
    """One recall request as the channels see it."""

    project: str
    text: str  # the query without any recognised time expression
    vector: object  # np.ndarray, computed lazily by the caller
    where: str  # LanceDB filter: project, visibility, kinds, hard time bounds
    limit: int
    files: list[str] = field(default_factory=list)
    filter: Filter | None = None  # `where` as arrays, for the snapshot
    snapshot: Snapshot | None = None
