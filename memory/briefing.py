"""What an agent should know when a session starts in a project, within a character budget.

The selection is shared by the MCP server (`briefing` tool and `memory://briefing`), the CLI
and session-start hooks. It reads only current memories (active, not superseded, still valid:
quarantined, archived, superseded and outdated ones never appear), groups them into sections,
ranks each memory by trust and retention, and fills the budget section by section so that one
busy kind cannot crowd out the others.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from memory.record import Memory, utcnow
from memory.scoring import decay
from memory.scoring import trust as trust_mod

if TYPE_CHECKING:
    from memory.service import Memories

# (section, kinds), in the order sections are shown and first filled.
SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("conventions", ("convention", "preference")),
    ("decisions", ("decision",)),
    ("open bugs", ("bug",)),
    ("facts", ("fact", "doc")),
    ("recent work", ("episode", "commit", "note")),
)
# Recent work older than this is history, not news: recall finds it when it matters.
RECENT_DAYS = 14
SNIPPET_CHARS = 220
MIN_SNIPPET_CHARS = 60
# A memory about a file the agent is working on counts this much more.
FILE_BOOST = 2.0
DEFAULT_BUDGET = 2000
MAX_ROWS_PER_KIND = 2000  # newest rows read per kind; a briefing never needs more


@dataclass
class BriefingItem:
    memory: Memory
    section: str
    score: float
    trust: float
    retention: float
    line: str  # the rendered line, exactly as counted against the budget


@dataclass
class Briefing:
    project: str
    budget: int
    items: list[BriefingItem] = field(default_factory=list)
    omitted: int = 0  # eligible memories that did not fit the budget
    chars: int = 0  # length of `text`

    def sections(self) -> dict[str, list[BriefingItem]]:
        out: dict[str, list[BriefingItem]] = {}
        for name, _ in SECTIONS:
            chosen = [i for i in self.items if i.section == name]
            if chosen:
                out[name] = chosen
        return out

    @property
    def text(self) -> str:
        return render(self.sections())


def section_of(kind: str) -> str | None:
    for name, kinds in SECTIONS:
        if kind in kinds:
            return name
    return None


def _about_files(memory: Memory, files: Sequence[str]) -> bool:
    if not files:
        return False
    mine = {f.strip("./") for f in memory.files} | {e.strip("./") for e in memory.entities}
    names = {PurePosixPath(f).name for f in mine}
    for f in files:
        norm = f.strip().strip("./")
        if norm and (norm in mine or PurePosixPath(norm).name in names):
            return True
    return False


def score(memory: Memory, now: datetime, files: Sequence[str] = ()) -> tuple[float, float, float]:
    """(score, trust mean, retention) of `memory` for a briefing at `now`."""
    trust = trust_mod.mean(memory.trust_alpha, memory.trust_beta)
    age_days = max(0.0, (now - memory.valid_from).total_seconds() / 86400.0)
    if memory.last_accessed_at is not None:  # use reinforces, as in recall
        age_days = min(age_days, max(0.0, (now - memory.last_accessed_at).total_seconds() / 86400))
    retention = decay.retention_for(memory.kind, age_days, memory.access_count,
                                    memory.importance, trust)
    value = trust_mod.weight(memory.trust_alpha, memory.trust_beta) * retention
    value *= 0.5 + memory.importance
    if _about_files(memory, files):
        value *= FILE_BOOST
    return value, trust, retention


def format_line(memory: Memory, snippet: str, trust: float) -> str:
    date = memory.valid_from.date().isoformat()
    return f"- {snippet} [{memory.id} \u00b7 {date} \u00b7 trust {trust:.2f}]"


def _snippet(text: str, limit: int, clean: Callable[[str], str]) -> str:
    flat = " ".join(clean(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "\u2026"


def header(section: str) -> str:
    return f"## {section}"


def render(sections: dict[str, list[BriefingItem]]) -> str:
    blocks = [header(name) + "\n" + "\n".join(i.line for i in items)
              for name, items in sections.items()]
    return "\n\n".join(blocks)


def eligible(rows: Sequence[Memory], now: datetime) -> list[Memory]:
    """Current memories worth a briefing: active, not superseded, still valid, known kind."""
    out = []
    for m in rows:
        if m.status != "active" or m.superseded_by is not None:
            continue
        if m.valid_to is not None and m.valid_to <= now:
            continue
        section = section_of(m.kind)
        if section is None:
            continue
        if section == "recent work" and now - m.valid_from > timedelta(days=RECENT_DAYS):
            continue
        out.append(m)
    return out


def select(rows: Sequence[Memory], *, project: str, files: Sequence[str] = (),
           budget: int = DEFAULT_BUDGET, now: datetime | None = None,
           clean: Callable[[str], str] = lambda s: s) -> Briefing:
    """Pure selection over `rows` (any memories; ineligible ones are skipped).

    Round-robin over sections in SECTIONS order, best first within each, so every section with
    something to say gets its best line before any section gets a second one. The budget
    counts the rendered text (`Briefing.text`), headers and separators included. `clean` is
    applied to memory text before it is cut to a snippet (the MCP server passes its
    boundary-neutraliser).
    """
    now = now or utcnow()
    budget = max(0, int(budget))
    queues: dict[str, list[tuple[float, float, float, Memory]]] = {n: [] for n, _ in SECTIONS}
    candidates = eligible(rows, now)
    for m in candidates:
        value, trust, retention = score(m, now, files)
        queues[section_of(m.kind) or ""].append((value, trust, retention, m))
    for q in queues.values():
        q.sort(key=lambda t: (-t[0], t[3].id))

    result = Briefing(project=project, budget=budget)
    used = 0
    opened: set[str] = set()
    chosen: list[BriefingItem] = []
    exhausted = False
    while not exhausted:
        exhausted = True
        for name, _ in SECTIONS:
            q = queues[name]
            if not q:
                continue
            value, trust, retention, m = q[0]
            # Cost of this line: the line, its newline, and the section header if new.
            overhead = 1 if name in opened else len(header(name)) + 1 + (2 if opened else 0)
            probe = format_line(m, "", trust)
            room = budget - used - overhead - len(probe)
            limit = min(SNIPPET_CHARS, room)
            if limit < MIN_SNIPPET_CHARS and limit < len(" ".join(m.text.split())):
                continue  # does not fit; a shorter memory of another section still may
            q.pop(0)
            exhausted = False
            line = format_line(m, _snippet(m.text, limit, clean), trust)
            used += overhead + len(line)
            opened.add(name)
            chosen.append(BriefingItem(m, name, value, trust, retention, line))
    order = {name: n for n, (name, _) in enumerate(SECTIONS)}
    result.items = sorted(chosen, key=lambda i: order[i.section])  # stable: best first within
    result.omitted = len(candidates) - len(chosen)
    result.chars = len(result.text)
    return result


def briefing(mem: Memories, files: Sequence[str] = (), budget: int = DEFAULT_BUDGET,
             now: datetime | None = None,
             clean: Callable[[str], str] = lambda s: s) -> Briefing:
    """The briefing for `mem`'s project (see `select`)."""
    # Newest first per kind, so a flood of notes cannot push old conventions out of reach.
    rows = [m for _, kinds in SECTIONS for kind in kinds
            for m in mem.list(kind=kind, status="active", include_superseded=False,
                              limit=MAX_ROWS_PER_KIND)]
    return select(rows, project=mem.project.name, files=files, budget=budget, now=now,
                  clean=clean)
