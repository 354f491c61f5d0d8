"""Semantic channel: cosine similarity of MiniLM vectors, searched in LanceDB
(or, for a small table, in the snapshot's vectors)."""

from __future__ import annotations

from memory.recall.channels import Query, Ranked
from memory.store import MemoryStore


def search(store: MemoryStore, q: Query) -> Ranked:
    # Below the ANN threshold the snapshot holds the vectors: the same exact cosine search,
    # without LanceDB's per-query overhead.
    if q.snapshot is not None and q.snapshot.vectors is not None and q.filter is not None:
        return q.snapshot.nearest(q.vector, q.filter, q.limit)  # type: ignore[arg-type]
    return store.table.vector_search(q.vector, q.where, q.limit)  # type: ignore[arg-type]
