"""How memories look to an agent: recall hits within a budget, full records, and their text.

Everything a memory contributes (text, title, agent name) passes through `render` on its way
out, so the same neutralised, attributed form appears in tool text, structured content and
resources.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from mcp_server import render
from mcp_server.models import MemoryRecord, RecallHit

SNIPPET_MAX = 240
SNIPPET_MIN = 60


def iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value is not None else None


def why(ranks: dict[str, int]) -> str:
    if not ranks:
        return "neighbour (same session or commit) of a strong hit"
    return ", ".join(f"{c} #{r}" for c, r in sorted(ranks.items(), key=lambda x: x[1]))


def render_hits(hits: list[Any], budget: int) -> tuple[str, list[RecallHit], int]:
    """Render hits best first while the text stays within `budget` characters."""
    text = render.EVIDENCE_PREAMBLE
    out: list[RecallHit] = []
    for n, hit in enumerate(hits):
        m = hit.memory
        header = render.attribution(memory_id=m.id, kind=m.kind,
                                    date=m.valid_from.date().isoformat(), source=m.source,
                                    agent=m.agent, trust=hit.trust)
        matched = why(hit.ranks)
        fixed = len("\n\n") + len(header) + len("\n> ") + len("\nmatched: ") + len(matched)
        room = budget - len(text) - fixed
        # Share what is left fairly between the hits still to come.
        fair = room // max(1, min(len(hits) - n, 4))
        limit = max(SNIPPET_MIN, min(SNIPPET_MAX, fair))
        if limit > room:
            limit = room
        if limit < SNIPPET_MIN and (not out or limit < 20):
            if out:
                break
            limit = max(20, limit)  # the best hit is always shown, however short
        snippet = render.one_line(m.text, limit)
        text += f"\n\n{header}\n> {snippet}\nmatched: {matched}"
        out.append(RecallHit(id=m.id, kind=m.kind, date=m.valid_from.date().isoformat(),
                             source=m.source, trust=round(hit.trust, 4),
                             score=round(hit.score, 6), snippet=snippet, why=matched))
    return text, out, len(hits) - len(out)


def record(m: Any, history: list[Any]) -> MemoryRecord:
    return MemoryRecord(
        id=m.id, kind=m.kind, status=m.status, current=m.is_current,
        title=render.neutralise(m.title) if m.title else None, text=render.neutralise(m.text),
        tags=m.tags, files=m.files, entities=m.entities, source=m.source, agent=m.agent,
        session=m.session, commit_sha=m.commit_sha, created_at=iso(m.created_at) or "",
        valid_from=iso(m.valid_from) or "", valid_to=iso(m.valid_to),
        supersedes=m.supersedes, superseded_by=m.superseded_by,
        importance=round(float(m.importance), 4), trust=round(m.trust, 4),
        access_count=int(m.access_count), redacted=m.redactions,
        history=[h.id for h in history],
    )


def render_record(r: MemoryRecord) -> str:
    extra = [r.status if r.current else f"{r.status}, not current"]
    header = render.attribution(memory_id=r.id, kind=r.kind, date=r.valid_from[:10],
                                source=r.source, agent=r.agent, trust=r.trust, extra=extra)
    body = f"{r.title}\n{r.text}" if r.title else r.text
    lines = [render.quote(body, header)]
    facts = {"tags": ", ".join(r.tags), "files": ", ".join(r.files),
             "valid": f"{r.valid_from} to {r.valid_to or 'now'}",
             "supersedes": r.supersedes, "superseded by": r.superseded_by,
             "history": " -> ".join(r.history) if len(r.history) > 1 else None,
             "redacted": ", ".join(r.redacted), "session": r.session, "commit": r.commit_sha}
    lines += [f"{k}: {render.one_line(str(v), 300)}" for k, v in facts.items() if v]
    return "\n".join(lines)
