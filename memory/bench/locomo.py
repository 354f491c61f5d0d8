"""`memctl bench locomo`: turn- and session-level recall on LoCoMo conversations.

Each conversation goes into its own fresh project: one memory per dialogue turn (speaker,
text, and the caption of a shared image; the session's date as the event time; the speaker
as an entity; nothing else). Questions of categories 1-4 are answered by recall with the
product's default settings; the channels can be restricted to compare modes on one ingest.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memory.errors import InputError
from memory.project import Project
from memory.recall import Hit, RecallOptions
from memory.record import Memory
from memory.service import Memories

if TYPE_CHECKING:
    from memory.recall.rerank import QueryExpander, Reranker

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


@dataclass
class Variants:
    """Optional model steps scored on the same questions as recall: a reranker of the hits,
    a query expander (recall runs again on the expanded query when it changed)."""

    reranker: Reranker | None = None
    expander: QueryExpander | None = None
    scores: dict[str, Scores] = field(default_factory=dict)
    seconds: dict[str, list[float]] = field(default_factory=dict)

    def names(self) -> list[str]:
        return [n for n, on in (("rerank", self.reranker), ("expand", self.expander)) if on]

    def timed(self, name: str, fn: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        result = fn()
        self.seconds.setdefault(name, []).append(time.perf_counter() - started)
        return result


def evaluate(mem: Memories, conv: Conversation, mapping: dict[str, str], mode: str,
             scores: Scores, questions: Sequence[dict[str, Any]] | None = None,
             variants: Variants | None = None) -> None:
    """Score recall on `questions` (default: all), and each of `variants` into
    `variants.scores["<mode>+<variant>"]`."""
    now = conv.last_date + timedelta(days=1)  # ask right after the conversation
    opts = RecallOptions(k=DEPTH, channels=MODES[mode], reinforce=False, now=now)
    for q in conv.questions if questions is None else questions:
        evidence = {e.strip() for e in q.get("evidence", []) for e in e.split(";")}
        if not evidence:
            continue
        question = str(q["question"])
        hits = mem.search(question, opts)
        _score_hits(hits, q, evidence, mapping, scores)
        if variants is None:
            continue
        if variants.reranker is not None:
            reranked = variants.timed("rerank", partial(variants.reranker.rerank, question,
                                                        hits))
            _score_hits(reranked, q, evidence, mapping,
                        variants.scores.setdefault(f"{mode}+rerank", Scores()))
        if variants.expander is not None:
            expanded = variants.timed("expand", partial(variants.expander.expand, question))
            if expanded != question:
                hits = mem.search(expanded, opts)
            _score_hits(hits, q, evidence, mapping,
                        variants.scores.setdefault(f"{mode}+expand", Scores()))


def _score_hits(hits: Sequence[Hit], q: dict[str, Any], evidence: set[str],
                mapping: dict[str, str], scores: Scores) -> None:
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
        progress: Callable[[str, int, int], None] | None = None, *, limit: int | None = None,
        variants: Variants | None = None) -> dict[str, Any]:
    """Recall scores per mode; `limit` takes the first questions of each conversation only;
    `variants` add "<mode>+rerank" / "<mode>+expand" results and their latencies."""
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
        asked = conv.questions[:limit] if limit is not None else conv.questions
        for mode in modes:
            if progress:
                progress(f"recall {conv.name} ({mode})", 0, len(asked))
            evaluate(mem, conv, mapping, mode, scores[mode], asked, variants)
        questions += len(asked)
    out: dict[str, Any] = {"questions": questions, "conversations": len(files),
                           "modes": {m: s.summary([5, 10]) for m, s in scores.items()}}
    if variants is not None:
        out["modes"].update({m: s.summary([5, 10]) for m, s in variants.scores.items()})
        out["latency_ms"] = {name: _latency(ts) for name, ts in variants.seconds.items()}
    return out


def _latency(seconds: list[float]) -> dict[str, float]:
    ms = sorted(1000 * t for t in seconds)
    return {"mean": round(sum(ms) / max(len(ms), 1), 1),
            "p95": round(ms[int(0.95 * (len(ms) - 1))], 1) if ms else 0.0}
