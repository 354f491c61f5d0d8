"""Temporal channel: memories that happened inside the query's time window.

The window comes from a time expression in the query ("last week", "in March", "before
2024-05-01"); the time is `valid_from`, when the memory happened, not when it was stored.
Inside the window, memories are ordered by semantic similarity to the rest of the query.
"""

from __future__ import annotations

from datetime import UTC, datetime

from memory.recall.channels import Query, Ranked
from memory.store import MemoryStore
from memory.timeparse import TimeWindow


def ts_literal(value: datetime) -> str:
    """A UTC timestamp literal. isoformat pads the year (strftime writes year 1 as '1', which
    LanceDB cannot parse); a bound beyond datetime's range after conversion is clamped."""
    if value.tzinfo is not None and value.utcoffset() is not None:
        try:
            value = value.astimezone(UTC)
        except OverflowError:
            value = datetime.min if value.year < 5000 else datetime.max
    return f"CAST('{value.replace(tzinfo=None).isoformat(timespec='microseconds')}' AS TIMESTAMP)"


def window_sql(window: TimeWindow) -> str:
    parts = []
    if window.start is not None:
        parts.append(f"valid_from >= {ts_literal(window.start)}")
    if window.end is not None:
        parts.append(f"valid_from < {ts_literal(window.end)}")
    return " AND ".join(parts) or "TRUE"


def search(store: MemoryStore, q: Query, window: TimeWindow | None) -> Ranked:
    if window is None:
        return []
    where = f"({q.where}) AND {window_sql(window)}"
    return store.table.vector_search(q.vector, where, q.limit)  # type: ignore[arg-type]
