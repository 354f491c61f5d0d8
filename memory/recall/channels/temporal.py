"""Temporal channel: memories that happened inside the query's time window.

The window comes from a time expression in the query ("last week", "in March", "before
2024-05-01"); the time is `valid_from`, when the memory happened, not when it was stored.
Inside the window, memories are ordered by semantic similarity to the rest of the query.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from memory.recall.channels import Query, Ranked
from memory.store import MemoryStore
from memory.timeparse import TimeWindow

_EPOCH = datetime(1970, 1, 1)


def _utc_naive(value: datetime) -> datetime:
    """UTC without tzinfo; a bound beyond datetime's range after conversion is clamped."""
    if value.tzinfo is not None and value.utcoffset() is not None:
        try:
            value = value.astimezone(UTC)
        except OverflowError:
            value = datetime.min if value.year < 5000 else datetime.max
    return value.replace(tzinfo=None)


def ts_literal(value: datetime) -> str:
    """A UTC timestamp literal. isoformat pads the year (strftime writes year 1 as '1', which
    LanceDB cannot parse)."""
    return f"CAST('{_utc_naive(value).isoformat(timespec='microseconds')}' AS TIMESTAMP)"


def ts_micros(value: datetime) -> int:
    """The same bound as `ts_literal`, in UTC microseconds (the snapshot's valid_from)."""
    return (_utc_naive(value) - _EPOCH) // timedelta(microseconds=1)


def window_bounds(window: TimeWindow) -> tuple[int | None, int | None]:
    """`window_sql` as [start, end) microseconds."""
    return (None if window.start is None else ts_micros(window.start),
            None if window.end is None else ts_micros(window.end))


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
    if q.snapshot is not None and q.snapshot.vectors is not None and q.filter is not None:
        f = replace(q.filter, bounds=(*q.filter.bounds, window_bounds(window)))
        return q.snapshot.nearest(q.vector, f, q.limit)  # type: ignore[arg-type]
    where = f"({q.where}) AND {window_sql(window)}"
    return store.table.vector_search(q.vector, where, q.limit)  # type: ignore[arg-type]
