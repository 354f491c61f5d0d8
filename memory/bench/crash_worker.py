"""The process `memctl bench crash` kills: it writes memories and acknowledges each on stdout.

    python -m memory.bench.crash_worker --home H --project P --seed S [--max-ops N]

Protocol, one flushed line each: `READY`; `BEGIN <op> [<id>]` before an operation and
`END <op>` after it; `ACK <id> <marker>` once the call that stored a memory has returned (so
an acknowledged memory is one a caller was told is stored); `ARCHIVED <id>`,
`SUPERSEDED <old> <new>`, `ERASED <id>` likewise; `DONE` if it ran out of operations.

Operations mix every write path and the moments a crash could hurt: single remember, a batch
through `insert_many`, a pre-embedded batch straight into `store.insert` (so the whole op is
the table + index write), supersede, soft and hard forget, feedback (a row update),
compaction (the automatic path when fragmented, else forced), a Tantivy reindex and the
LanceDB vector (ANN) index build.
"""

from __future__ import annotations

import argparse
import random
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from memory.record import Memory
    from memory.service import Memories

# Text is made from the marker alone, so the parent can rebuild and check it.
_AREAS = ["auth", "billing", "cache", "cli", "db", "search", "sync", "ui", "api", "jobs"]
_SUBJECTS = ["the retry loop", "the session token", "the migration script", "the config loader",
             "the rate limiter", "the websocket client", "the export job", "the audit log",
             "the thumbnail worker", "the feature flag", "the schema validator", "the router"]
_EVENTS = ["times out under load", "must run before deploys", "drops unicode filenames",
           "reads stale values after failover", "leaks file handles on error",
           "is pinned to an old release", "needs an explicit timezone", "double counts refunds",
           "skips hidden directories", "breaks on empty input", "logs secrets when verbose"]
_ACTIONS = ["wrap it in a transaction", "add jitter to the backoff", "cap the batch size",
            "normalise paths first", "close the handle in finally", "use UTC everywhere",
            "validate before writing", "bump the client library", "stream instead of buffering",
            "gate it behind the flag", "add a regression test", "document the workaround"]
KINDS = ["fact", "decision", "convention", "bug", "note", "preference"]


def marker_for(seed: int, n: int) -> str:
    """A word no other memory holds: finds exactly one memory through BM25."""
    return f"crk{seed}n{n}"


def content(marker: str) -> tuple[str, str, str]:
    """(text, file, kind) of the memory carrying `marker`."""
    rng = random.Random(marker)
    area = rng.choice(_AREAS)
    file = f"src/{area}/{marker}_{rng.choice(_AREAS)}.py"
    text = (f"In {area}, {rng.choice(_SUBJECTS)} {rng.choice(_EVENTS)}; "
            f"we {rng.choice(_ACTIONS)} and {rng.choice(_ACTIONS)} (ticket {marker}, {file}).")
    return text, file, rng.choice(KINDS)


# (operation, weight). Reads of other moments (embedding) dominate a remember, so `write`
# exists to put more kills inside the table and index commits themselves.
OPS = [("remember", 22), ("write", 16), ("batch", 8), ("supersede", 10), ("forget", 7),
       ("feedback", 5), ("compact", 14), ("erase", 3), ("reindex", 4), ("index", 5)]


@dataclass
class State:
    seed: int
    made: int = 0
    # Memories this worker may target: current ones (not superseded, archived or erased).
    plain: list[str] = field(default_factory=list)
    # Successors are never hard-erased: that would strand their predecessor.
    successors: set[str] = field(default_factory=set)


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def next_marker(state: State) -> str:
    state.made += 1
    return marker_for(state.seed, state.made)


def prepare(mem: Memories, marker: str, **extra: Any) -> Memory:
    text, file, kind = content(marker)
    return mem.prepare(text, kind=kind, files=[file], source="agent", agent="crash-bench",
                       **extra)


def run_op(op: str, mem: Memories, state: State, rng: random.Random) -> None:
    store = mem.store
    if op in ("supersede", "forget", "erase", "feedback") and not state.plain:
        op = "remember"
    if op == "remember":
        marker = next_marker(state)
        text, file, kind = content(marker)
        say("BEGIN remember")
        result = mem.remember(text, kind=kind, files=[file], source="agent", agent="crash-bench")
        say(f"ACK {result.id} {marker}")
        state.plain.append(result.id)
    elif op in ("write", "batch"):
        markers = [next_marker(state) for _ in range(rng.randint(2, 6))]
        records = [prepare(mem, m) for m in markers]
        if op == "write":
            from memory.service import embed_text

            vectors = mem.embedder().embed([embed_text(r) for r in records])
            for record, vector in zip(records, vectors, strict=True):
                record.vector = vector.tolist()
            say("BEGIN write")
            store.insert(records)
        else:
            say("BEGIN batch")
            mem.insert_many(records)
        for record, marker in zip(records, markers, strict=True):
            say(f"ACK {record.id} {marker}")
            state.plain.append(record.id)
    elif op == "supersede":
        old = state.plain.pop(rng.randrange(len(state.plain)))
        marker = next_marker(state)
        text, file, kind = content(marker)
        say(f"BEGIN supersede {old}")
        result = mem.remember(text, kind=kind, files=[file], source="agent",
                              agent="crash-bench", supersedes=old)
        say(f"ACK {result.id} {marker}")
        say(f"SUPERSEDED {old} {result.id}")
        state.plain.append(result.id)
        state.successors.add(result.id)
    elif op in ("forget", "erase"):
        pool = [i for i in state.plain if op == "forget" or i not in state.successors]
        if not pool:
            return run_op("remember", mem, state, rng)
        target = pool[rng.randrange(len(pool))]
        state.plain.remove(target)
        say(f"BEGIN {op} {target}")
        mem.forget(target, hard=op == "erase")
        say(f"{'ERASED' if op == 'erase' else 'ARCHIVED'} {target}")
    elif op == "feedback":
        target = rng.choice(state.plain)
        say(f"BEGIN feedback {target}")
        mem.feedback(target, rng.choice(["helpful", "used", "wrong"]))
    elif op == "compact":
        say("BEGIN compact")
        # The automatic path when fragments have piled up; otherwise force a compaction, so
        # a kill can land inside one whatever the table looks like.
        if not store.compact_if_fragmented():
            with store.lock.hold():
                store.table.compact()
    elif op == "reindex":
        say("BEGIN reindex")
        store.reindex()
    elif op == "index":
        say("BEGIN index")
        # The ANN build as the store runs it (no write lock; normally in a background thread
        # once a table is large); once an index exists, rebuild it (replace) to kill again.
        if not store.index_vectors_if_large(min_rows=0, background=False):
            store.table.build_vector_index()
    say(f"END {op}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m memory.bench.crash_worker")
    parser.add_argument("--home", required=True)
    parser.add_argument("--project", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--max-ops", type=int, default=400)
    args = parser.parse_args(argv)

    from pathlib import Path

    from memory.app import open_context
    from memory.project import Project

    ctx = open_context(Path(args.home))
    mem = ctx.memories(Project(args.project, args.project))
    mem.embedder()  # load the model before READY: kills should land in store work
    rng = random.Random(args.seed)
    state = State(seed=args.seed)
    # Earlier rounds' memories are targets too (their last worker was killed).
    current = mem.list(limit=0)
    state.plain = [m.id for m in current]
    state.successors = {m.id for m in current if m.supersedes}
    say("READY")
    names = [name for name, _ in OPS]
    weights = [w for _, w in OPS]
    for _ in range(args.max_ops):
        run_op(rng.choices(names, weights)[0], mem, state, rng)
    say("DONE")
    return 0


if __name__ == "__main__":
    sys.exit(main())
