"""`memctl bench crash`: SIGKILL a process while it writes, restart, and check that every
memory it was told is stored survived, once, and is findable through every channel.

Each round starts `memory.bench.crash_worker` on one data dir (kept across rounds, so the
table grows and fragments like a real one), reads its acknowledgements, and kills it at a
moment chosen at random: inside a given operation (a write, a compaction, a hard erase, a
reindex, a vector index build), a little after the n-th acknowledgement, or at a random
time. Then it plays the next process: looks at what the kill left (for the repair count),
opens the store (recovery runs there), runs doctor with repair, and checks the ledger (see
crash_verify).
"""

from __future__ import annotations

import json
import os
import queue
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from memory.bench.crash_verify import Ledger
    from memory.service import LazyEmbedder

PROJECT = "crash-bench"
ROUND_TIMEOUT_S = 120.0
WRITE_OPS = frozenset({"remember", "write", "batch", "supersede", "forget", "erase", "feedback"})
# Where kills are aimed: (trigger, weight). An op name kills inside that op; "ack" a moment
# after the n-th acknowledgement; "time" at a random time after start-up.
TRIGGERS = [("write", 20), ("compact", 25), ("remember", 8), ("batch", 5), ("supersede", 10),
            ("forget", 5), ("erase", 6), ("reindex", 5), ("index", 8), ("ack", 10), ("time", 6)]
DEFAULT_OP_S = 0.05
# Stored before the first kill: the entity channel ignores entities held by over 10% of a
# project's memories, so a near-empty project could not find anything through it.
BASE_MEMORIES = 20


@dataclass
class Plan:
    trigger: str
    count: int  # kill after the count-th BEGIN of the op (or ACK)
    fraction: float  # how far into the op's typical duration to kill


def choose_plan(rng: random.Random) -> Plan:
    trigger = rng.choices([t for t, _ in TRIGGERS], [w for _, w in TRIGGERS])[0]
    count = rng.randint(1, 15) if trigger == "ack" else rng.randint(1, 2)
    return Plan(trigger, count, rng.random())


PHASES = ("write", "compaction", "index build", "other")


def phase_of(op: str | None) -> str:
    if op == "compact":
        return "compaction"
    if op == "index":
        return "index build"
    return "write" if op in WRITE_OPS else "other"


@dataclass
class Kill:
    """How one worker run ended."""

    killed: bool = False
    op: str | None = None  # the operation in progress when it died
    target: str | None = None
    error: str | None = None  # the worker failed by itself (a bug) or hung
    touched: set[str] = field(default_factory=set)  # ids acknowledged or targeted


class WorkerRun:
    """One worker process, its stdout read by a thread into a queue with arrival times."""

    def __init__(self, home: Path, seed: int) -> None:
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in finish)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "memory.bench.crash_worker", "--home", str(home),
             "--project", PROJECT, "--seed", str(seed)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.stderr)
        self.lines: queue.Queue[tuple[float, str] | None] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.put((time.monotonic(), raw.decode("utf-8", "replace").strip()))
        self.lines.put(None)

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)

    def finish(self) -> list[tuple[float, str]]:
        """Wait for the process; return the lines it printed that were not read yet and keep
        the end of its stderr."""
        self.proc.wait(timeout=30)
        self.reader.join(timeout=30)
        rest = []
        while not self.lines.empty() and (item := self.lines.get_nowait()) is not None:
            rest.append(item)
        self.stderr.seek(0)
        self.stderr_tail = self.stderr.read().decode("utf-8", "replace")[-600:]
        self.stderr.close()
        return rest


class Tracker:
    """Follows the worker's lines: the ledger, the operation in progress, op durations."""

    def __init__(self, ledger: Ledger, durations: dict[str, list[float]]) -> None:
        self.ledger = ledger
        self.durations = durations
        self.kill = Kill()
        self.begun: Counter[str] = Counter()
        self.acks = 0
        self.ready = False
        self.done = False
        self._started = 0.0

    def handle(self, line: str, at: float) -> None:
        parts = line.split()
        if not parts:
            return
        head = parts[0]
        if head == "READY":
            self.ready = True
        elif head == "DONE":
            self.done = True
        elif head == "BEGIN" and len(parts) >= 2:
            self.kill.op = parts[1]
            self.kill.target = parts[2] if len(parts) > 2 else None
            if self.kill.target:
                self.kill.touched.add(self.kill.target)
            self.begun[parts[1]] += 1
            self._started = at
        elif head == "END" and len(parts) == 2:
            self.durations.setdefault(parts[1], []).append(at - self._started)
            self.kill.op = self.kill.target = None
        else:
            if head == "ACK" and len(parts) == 3:
                self.acks += 1
                self.kill.touched.add(parts[1])
            self.ledger.apply(line)

    def due(self, plan: Plan, rng: random.Random) -> float | None:
        """Seconds to wait before the kill, once the plan's moment has come (else None)."""
        if plan.trigger == "time":
            return rng.uniform(0.0, 3.0) if self.ready else None
        if plan.trigger == "ack":
            return rng.uniform(0.0, DEFAULT_OP_S) if self.acks >= plan.count else None
        if self.kill.op == plan.trigger and self.begun[plan.trigger] >= plan.count:
            seen = self.durations.get(plan.trigger)
            typical = statistics.median(seen[-20:]) if seen else DEFAULT_OP_S
            return plan.fraction * typical
        return None


def drive(home: Path, seed: int, plan: Plan, ledger: Ledger, durations: dict[str, list[float]],
          rng: random.Random) -> Kill:
    """Run one worker until the plan's moment, then SIGKILL it."""
    run = WorkerRun(home, seed)
    track = Tracker(ledger, durations)
    deadline = time.monotonic() + ROUND_TIMEOUT_S
    fire_at: float | None = None
    while True:
        now = time.monotonic()
        if fire_at is not None and now >= fire_at:
            run.kill()
            track.kill.killed = True
            break
        if now >= deadline:
            run.kill()
            track.kill.error = f"worker hung for {ROUND_TIMEOUT_S:.0f} s"
            break
        wait = min(deadline, fire_at if fire_at is not None else deadline) - now
        try:
            item = run.lines.get(timeout=max(0.0005, wait))
        except queue.Empty:
            continue
        if item is None:
            break
        track.handle(item[1], item[0])
        if fire_at is None and (delay := track.due(plan, rng)) is not None:
            fire_at = item[0] + delay
    for at, line in run.finish():  # printed before it died
        track.handle(line, at)
    if not track.kill.killed and not track.done and track.kill.error is None:
        track.kill.error = f"worker exited with {run.proc.returncode}: {run.stderr_tail}"
    if track.kill.killed and track.kill.op:
        ledger.cut_off(track.kill.op, track.kill.target)
    return track.kill


@dataclass
class Totals:
    rounds: int = 0
    kills: Counter[str] = field(default_factory=Counter)  # by phase
    kills_by_op: Counter[str] = field(default_factory=Counter)
    completed: int = 0
    lost: set[str] = field(default_factory=set)
    resurrected: set[str] = field(default_factory=set)
    wrong_state: set[str] = field(default_factory=set)
    unfindable: set[tuple[str, str]] = field(default_factory=set)
    erased_on_disk: set[str] = field(default_factory=set)
    duplicates: int = 0
    adopted: int = 0
    repairs: int = 0
    repaired: Counter[str] = field(default_factory=Counter)
    doctor_clean: bool = True
    survived: int = 0
    errors: list[str] = field(default_factory=list)  # worker failures, unopenable store


def recover_and_check(home: Path, embedder: LazyEmbedder, ledger: Ledger, totals: Totals,
                      known: set[str] | None = None, touched: set[str] | None = None) -> bool:
    """Play the next process after a kill; True if everything held. Channels are searched
    for memories new since `known` plus `touched` ones (`known` None: for all of them)."""
    from memory.bench.crash_verify import (
        check_channels,
        check_rows,
        erased_text_on_disk,
        probe,
    )
    from memory.config import paths
    from memory.project import Project
    from memory.service import Memories
    from memory.store import MemoryStore

    p = paths(home)
    try:
        before = probe(p)
        store = MemoryStore(p)  # the restart: recovery runs on open
        store.doctor(repair=True)
        clean = store.doctor().clean
    except Exception as exc:  # a store that no longer opens is the worst finding of all
        totals.errors.append(f"store unusable after the kill: {type(exc).__name__}: {exc}"[:600])
        totals.doctor_clean = False
        return False
    if before.needs_repair:
        totals.repairs += 1
        totals.repaired.update({k: v for k, v in before.__dict__.items() if v})
    totals.doctor_clean &= clean
    mem = Memories(store, embedder, Project(PROJECT, PROJECT))
    found, present = check_rows(mem, ledger)
    ids = present
    if known is not None:
        ids = present & ((set(ledger.memories) - known) | (touched or set()))
    check_channels(mem, ledger, ids, found)
    found.erased_on_disk = erased_text_on_disk(p, ledger)
    totals.lost.update(found.lost)
    totals.resurrected.update(found.resurrected)
    totals.wrong_state.update(found.wrong_state)
    totals.unfindable.update(found.unfindable)
    totals.erased_on_disk.update(found.erased_on_disk)
    totals.duplicates = max(totals.duplicates, found.duplicates)
    totals.adopted += found.adopted
    return found.ok and clean


def cli_doctor(home: Path) -> bool:
    """`memctl doctor --json --no-repair` in its own process: clean after recovery?"""
    env = {**os.environ, "MEMCTL_HOME": str(home)}
    proc = subprocess.run([sys.executable, "-m", "memory.cli", "doctor", "--json", "--no-repair"],
                          capture_output=True, env=env, timeout=120)
    try:
        return proc.returncode == 0 and bool(json.loads(proc.stdout)["clean"])
    except (ValueError, KeyError):
        return False


def seed_store(home: Path, embedder: LazyEmbedder, ledger: Ledger, worker_seed: int) -> None:
    """The memories present before the first worker starts, acknowledged like its own."""
    from memory.bench.crash_worker import marker_for, prepare
    from memory.config import paths
    from memory.project import Project
    from memory.service import Memories
    from memory.store import MemoryStore

    mem = Memories(MemoryStore(paths(home)), embedder, Project(PROJECT, PROJECT))
    markers = [marker_for(worker_seed, i + 1) for i in range(BASE_MEMORIES)]
    records = [prepare(mem, m) for m in markers]
    mem.insert_many(records)
    for record, marker in zip(records, markers, strict=True):
        ledger.apply(f"ACK {record.id} {marker}")


def run(home: Path, rounds: int, seed: int,
        progress: Callable[[int, str], None] | None = None) -> dict[str, Any]:
    """`rounds` kill-restart-check rounds on the data dir `home` (models seeded)."""
    from memory.app import embedder_factory
    from memory.bench.crash_verify import Ledger
    from memory.config import paths
    from memory.service import LazyEmbedder

    started = time.monotonic()
    rng = random.Random(seed)
    ledger = Ledger()
    durations: dict[str, list[float]] = {}
    embedder = LazyEmbedder(embedder_factory(paths(home)))
    totals = Totals()
    # Worker seeds (which make the memories' markers) are distinct within a run.
    seed_store(home, embedder, ledger, seed * 100_000)
    for n in range(rounds):
        plan = choose_plan(rng)
        known = set(ledger.memories)
        kill = drive(home, seed * 100_000 + n + 1, plan, ledger, durations, rng)
        totals.rounds += 1
        if kill.error:
            totals.errors.append(kill.error)
        if kill.killed:
            totals.kills[phase_of(kill.op)] += 1
            totals.kills_by_op[kill.op or "between ops"] += 1
        else:
            totals.completed += 1
        ok = recover_and_check(home, embedder, ledger, totals, known, kill.touched)
        totals.survived += ok and not kill.error
        if progress:
            progress(n + 1, f"killed in {kill.op or 'between ops'}" if kill.killed
                     else "worker finished")
    # Last: every memory through every channel, and doctor from the real CLI.
    recover_and_check(home, embedder, ledger, totals)
    totals.doctor_clean &= cli_doctor(home)
    return summary(totals, ledger, time.monotonic() - started)


def summary(t: Totals, ledger: Ledger, seconds: float) -> dict[str, Any]:
    acked = sum(not e.adopted for e in ledger.memories.values())
    unfindable = Counter(channel for channel, _ in t.unfindable)
    return {
        "rounds": t.rounds,
        "killed": sum(t.kills.values()),
        "completed_without_kill": t.completed,
        "kills": {ph: t.kills.get(ph, 0) for ph in PHASES},
        "kills_by_op": dict(sorted(t.kills_by_op.items())),
        "acknowledged": acked,
        "unacknowledged_but_stored": t.adopted,
        "lost": len(t.lost),
        "duplicates": t.duplicates,
        "resurrected": len(t.resurrected),
        "wrong_state": len(t.wrong_state),
        "erased_text_left": len(t.erased_on_disk),
        "unfindable": dict(sorted(unfindable.items())),
        "repairs": t.repairs,
        "repaired": dict(t.repaired),
        "doctor_clean": t.doctor_clean,
        "rounds_survived": t.survived,
        "errors": t.errors,
        "seconds": round(seconds, 1),
    }


def failed(result: dict[str, Any]) -> bool:
    bad = ("lost", "duplicates", "resurrected", "wrong_state", "erased_text_left", "unfindable",
           "errors")
    return any(result[key] for key in bad) or not result["doctor_clean"]


def crash(
    rounds: Annotated[int, typer.Option("--rounds", help="Kill-restart-check rounds.")] = 10,
    seed: Annotated[int, typer.Option("--seed", help="Seed for kill moments and content "
                                      "(same seed, same plan).")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Crash safety: SIGKILL a process while it writes memories (inside writes, compactions,
    hard erases, reindexes, vector index builds, or at random), restart, and check that
    every acknowledged memory is still there once, in its state, findable through every
    channel, and that doctor is clean. Exits 1 if anything was lost, duplicated or
    unfindable."""
    from rich.progress import Progress

    from memory.bench.cli import err, out, scratch_home
    from memory.errors import InputError

    if not 1 <= rounds <= 10_000:
        raise InputError("--rounds must be between 1 and 10000")
    if not 0 <= seed < 2**31:
        raise InputError("--seed must be between 0 and 2**31-1")
    with scratch_home() as home, Progress(console=err, transient=True) as bar:
        task = bar.add_task("crash rounds", total=rounds)

        def progress(done: int, what: str) -> None:
            bar.update(task, completed=done, description=f"round {done}: {what}")

        result = run(home, rounds, seed, progress)
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        print_table(out, result)
    if failed(result):
        raise typer.Exit(1)


def print_table(console: Any, r: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"Crash safety: {r['rounds']} rounds of SIGKILL + restart",
                  show_header=False)
    table.add_column("measure")
    table.add_column("value", justify="right")
    ops = ", ".join(f"{op} {n}" for op, n in r["kills_by_op"].items())
    rows = [
        ("rounds (killed / finished first)",
         f"{r['rounds']} ({r['killed']} / {r['completed_without_kill']})"),
        *((f"kills during {ph}" if ph != "other" else "kills elsewhere (reindex, idle)",
           str(r["kills"][ph])) for ph in PHASES),
        ("kills by operation", ops or "none"),
        ("memories acknowledged", str(r["acknowledged"])),
        ("stored before their ack", str(r["unacknowledged_but_stored"])),
        ("lost", str(r["lost"])),
        ("duplicated", str(r["duplicates"])),
        ("erased, yet back", str(r["resurrected"])),
        ("wrong text/status/link", str(r["wrong_state"])),
        ("hard-erased text left on disk", str(r["erased_text_left"])),
        ("unfindable (by channel)", ", ".join(f"{c} {n}" for c, n in r["unfindable"].items())
         or "0"),
        ("restarts that needed repair", f"{r['repairs']} {r['repaired'] or ''}".strip()),
        ("doctor clean after repair", "yes" if r["doctor_clean"] else "NO"),
        ("rounds survived", f"{r['rounds_survived']} / {r['rounds']}"),
        ("seconds", str(r["seconds"])),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    for e in r["errors"]:
        console.print(f"[red]error: {e}[/red]")
