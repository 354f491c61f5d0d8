"""Entity / graph channel.

Memories that share entities (identifiers, paths, packages, names) with the query, ranked by
BM25 over the entities field (rare entities weigh more), then one step of spreading
activation along the links made at write time.
"""

from __future__ import annotations

from memory.entities import extract_entities
from memory.recall.channels import Query, Ranked
from memory.store import MemoryStore
from memory.store.table import sql_in

SEEDS = 5
# An entity held by more than this share of the project's memories (a speaker in their own
# conversation, the project's own package name) ranks nothing: leave it to other channels.
MAX_ENTITY_SHARE = 0.1
SPREAD = 0.5  # share of a seed's score passed to each linked memory


def query_entities(text: str) -> str:
    entities = extract_entities(text)
    # Capitalised words after the first are names in conversation ("Caroline", "Postgres").
    names = [w.strip(".,!?;:'\"()") for w in text.split()[1:] if w[:1].isupper()]
    return " ".join(dict.fromkeys([*entities, *(n for n in names if n.isalnum())]))


def search(store: MemoryStore, q: Query) -> Ranked:
    ents = query_entities(q.text)
    if ents:
        ents = " ".join(store.lexical.rare_terms(q.project, "entities", ents, MAX_ENTITY_SHARE))
    hits = store.lexical.search(q.project, ents, q.limit, fields=["entities"]) if ents else []
    if not hits:
        return []
    scores = dict(hits)
    seed_score = dict(hits[:SEEDS])
    # Links live on the newer memory (made at write time); follow them from the seeds.
    if q.snapshot is not None and q.filter is not None:
        seeds = q.snapshot.visible(list(seed_score), q.filter)
        rows = store.snapshots.take(seeds, ["id", "links"], q.snapshot).to_pylist()
    else:
        rows = store.table.scan(f"({q.where}) AND {sql_in('id', list(seed_score))}",
                                ["id", "links"]).to_pylist()
    for row in rows:
        for linked in row["links"] or []:
            scores[linked] = scores.get(linked, 0.0) + SPREAD * seed_score[row["id"]]
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[: q.limit]
