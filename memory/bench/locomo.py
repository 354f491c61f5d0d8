"""`memctl bench locomo`: turn- and session-level recall on LoCoMo conversations.

Each conversation goes into its own fresh project: one memory per dialogue turn (speaker,
text, and the caption of a shared image; the session's date as the event time; the speaker
as an entity; nothing else). Questions of categories 1-4 are answered by recall with the
product's default settings; the channels can be restricted to compare modes on one ingest.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from memory.errors import InputError
from memory.project import Project
from memory.recall import RecallOptions
from memory.record import Memory
from memory.service import Memories

MODES: dict[str, Sequence[str] | None] = {
    "fused": None,  # every channel: the product's default recall
    "bm25": ("lexical",),
    "vector": ("semantic",),
}
CATEGORIES = ("1", "2", "3", "4")
DEPTH = 50  # hits retrieved per question (for MRR and distinct sessions)
_DATE = re.compile(r"(\d{1,2}):(\d{2})\s*([ap]m)\s+on\s+(\d{1,2})\s+(\w+),?\s+(\d{4})", re.I)


def parse_session_date(value: str) -> datetime:
    """'1:56 pm on 8 May, 2023' -> aware datetime (UTC)."""
    m = _DATE.search(value or "")
    if not m:
        raise InputError(f"unrecognised LoCoMo session date: {value!r}")
    hour, minute, ampm, day, month, year = m.groups()
    h = int(hour) % 12 + (12 if ampm.lower() == "pm" else 0)
    parsed = datetime.strptime(f"{day} {month[:3]} {year}", "%d %b %Y")
    return parsed.replace(hour=h, minute=int(minute), tzinfo=UTC)


@dataclass
class Conversation:
    name: str
    turns: list[dict[str, Any]]  # speaker, dia_id, text, caption, session, date
    questions: list[dict[str, Any]]

    @property
    def last_date(self) -> datetime:
        return max(t["date"] for t in self.turns)


def load(path: Path) -> Conversation:
    data = json.loads(path.read_text(encoding="utf-8"))
    conv = data.get("conversation", data)
    turns: list[dict[str, Any]] = []
    n = 1
    while f"session_{n}" in conv:
        date = parse_session_date(conv.get(f"session_{n}_date_time", ""))
        for turn in conv[f"session_{n}"]:
            turns.append({"speaker": turn["speaker"], "dia_id": turn["dia_id"],
                          "text": turn.get("text", ""), "caption": turn.get("blip_caption"),
                          "session": n, "date": date})
        n += 1
    questions = [q for q in data.get("qa", []) if str(q.get("category")) in CATEGORIES]
    return Conversation(path.stem, turns, questions)


def turn_text(turn: dict[str, Any]) -> str:
    text = f"{turn['speaker']}: {turn['text']}".strip()
    if turn.get("caption"):
        text += f" [shares an image: {turn['caption']}]"
    return text


def ingest(mem: Memories, conv: Conversation, progress: Callable[[int], None] | None = None
           ) -> dict[str, str]:
    """Store every turn; return memory id -> dia_id."""
    records: list[Memory] = []
    mapping: dict[str, str] = {}
    for turn in conv.turns:
        m = mem.prepare(turn_text(turn), kind="episode", source="import",
                        valid_from=turn["date"], entities=[turn["speaker"]],
                        session=f"{conv.name}:S{turn['session']}")
        records.append(m)
        mapping[m.id] = turn["dia_id"]
    # Duplicated turns ("Thanks!") are stored once per turn on purpose: each is evidence.
    mem.insert_many(records, progress=progress)
    return mapping


@dataclass
class Scores:
    hits5: float = 0.0
    hits10: float = 0.0
    sess5: float = 0.0
    rr: float = 0.0
    n: int = 0
    per_cat: dict[str, list[float]] = field(default_factory=dict)

    def add(self, cat: str, h5: bool, h10: bool, s5: bool, rr: float) -> None:
        self.hits5 += h5
        self.hits10 += h10
        self.sess5 += s5
        self.rr += rr
        self.n += 1
        c = self.per_cat.setdefault(cat, [0.0, 0.0, 0.0, 0.0, 0.0])
        for idx, v in enumerate((h5, h10, s5, rr, 1.0)):
            c[idx] += v

    def summary(self, ks: Sequence[int]) -> dict[str, Any]:
        def block(h5: float, h10: float, s5: float, rr: float, n: float) -> dict[str, float]:
            n = max(n, 1)
            out = {"turn_recall@5": h5 / n, "turn_recall@10": h10 / n,
                   "session_recall@5": s5 / n, "mrr": rr / n, "questions": int(n)}
            return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items()}

        total = block(self.hits5, self.hits10, self.sess5, self.rr, self.n)
        total["per_category"] = {c: block(*v) for c, v in sorted(self.per_cat.items())}
        return total


def session_of(dia_id: str) -> str:
    return dia_id.split(":")[0]


def evaluate(mem: Memories, conv: Conversation, mapping: dict[str, str], mode: str,
             scores: Scores) -> None:
    now = conv.last_date + timedelta(days=1)  # ask right after the conversation
    for q in conv.questions:
        evidence = {e.strip() for e in q.get("evidence", []) for e in e.split(";")}
        if not evidence:
            continue
        opts = RecallOptions(k=DEPTH, channels=MODES[mode], reinforce=False, now=now)
        hits = mem.search(str(q["question"]), opts)
        ranked = [mapping.get(h.memory.id, "") for h in hits]
        first = next((r for r, d in enumerate(ranked, 1) if d in evidence), None)
        sessions: list[str] = []
        for d in ranked:
            if d and session_of(d) not in sessions:
                sessions.append(session_of(d))
        ev_sessions = {session_of(e) for e in evidence}
        scores.add(str(q["category"]), bool(first and first <= 5), bool(first and first <= 10),
                   bool(ev_sessions & set(sessions[:5])), 1.0 / first if first else 0.0)


def run(mem_for: Callable[[Project], Memories], data_dir: Path, modes: Sequence[str],
        progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    files = sorted(data_dir.glob("*.json"))
    if not files:
        raise InputError(f"no LoCoMo conversations (*.json) in {data_dir}")
    for mode in modes:
        if mode not in MODES:
            raise InputError(f"unknown mode {mode!r}; choose from {', '.join(MODES)} or all")
    scores = {mode: Scores() for mode in modes}
    questions = 0
    for path in files:
        conv = load(path)
        mem = mem_for(Project(f"locomo-{conv.name}", f"locomo-{conv.name}"))
        done = 0

        def step(n: int, conv: Conversation = conv) -> None:
            nonlocal done
            done += n
            if progress:
                progress(f"ingest {conv.name}", done, len(conv.turns))

        mapping = ingest(mem, conv, step)
        for mode in modes:
            if progress:
                progress(f"recall {conv.name} ({mode})", 0, len(conv.questions))
            evaluate(mem, conv, mapping, mode, scores[mode])
        questions += len(conv.questions)
    return {"questions": questions, "conversations": len(files),
            "modes": {m: s.summary([5, 10]) for m, s in scores.items()}}
