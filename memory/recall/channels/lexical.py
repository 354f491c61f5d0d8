"""Lexical channel: Tantivy BM25 over text, title, tags, entities and identifier parts."""

from __future__ import annotations

from memory.recall.channels import Query, Ranked
from memory.store import MemoryStore

# The index does not know which memories are hidden (superseded, archived), so ask for more
# and let the caller's visibility filter trim.
OVERFETCH = 3


def search(store: MemoryStore, q: Query) -> Ranked:
    return store.lexical.search(q.project, q.text, q.limit * OVERFETCH)
