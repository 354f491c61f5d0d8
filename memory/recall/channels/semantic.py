"""Semantic channel: cosine similarity of MiniLM vectors, searched in LanceDB."""

from __future__ import annotations

from memory.recall.channels import Query, Ranked
from memory.store import MemoryStore


def search(store: MemoryStore, q: Query) -> Ranked:
    return store.table.vector_search(q.vector, q.where, q.limit)  # type: ignore[arg-type]
