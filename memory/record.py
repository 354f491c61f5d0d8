"""The memory record, its vocabulary, and its Arrow schema in LanceDB."""

from __future__ import annotations

import os
import re
import threading
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa

KINDS = ("fact", "decision", "convention", "preference", "bug", "episode", "commit", "doc", "note")
SOURCES = ("user", "agent", "git", "watch", "import")
# active: recalled by default; archived: forgotten softly; quarantined: held back until a
# user releases it (text that looks like an instruction to the agent from a non-user source).
STATUSES = ("active", "archived", "quarantined")

EMBED_DIM = 384
ID_RE = re.compile(r"^[0-9a-f]{16}$")


_last_id = 0
_id_lock = threading.Lock()


def new_id(now: datetime | None = None) -> str:
    """16 hex chars: 44 bits of milliseconds + 20 bits starting at a random point.

    Strictly increasing within a process, so ids sort in creation order even for a batch
    made in one millisecond (recall uses that order for neighbours in a session).
    """
    global _last_id
    ms = int((now or utcnow()).timestamp() * 1000) & ((1 << 44) - 1)
    candidate = (ms << 20) | (int.from_bytes(os.urandom(3), "big") & 0x7FFFF)
    with _id_lock:
        if candidate <= _last_id:
            candidate = _last_id + 1
        _last_id = candidate
    return f"{candidate & ((1 << 64) - 1):016x}"


def utcnow() -> datetime:
    return datetime.now(UTC)


def is_valid_id(value: str) -> bool:
    return bool(ID_RE.match(value))


@dataclass
class Memory:
    id: str
    project: str
    kind: str
    text: str
    content_hash: str
    created_at: datetime
    valid_from: datetime  # when it happened / became true (event time for imports and commits)
    source: str = "user"
    title: str | None = None
    tags: list[str] = field(default_factory=list)
    entities: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    agent: str | None = None
    session: str | None = None
    commit_sha: str | None = None
    valid_to: datetime | None = None
    supersedes: str | None = None
    superseded_by: str | None = None
    status: str = "active"
    importance: float = 0.5
    trust_alpha: float = 1.0
    trust_beta: float = 1.0
    access_count: int = 0
    last_accessed_at: datetime | None = None
    updated_at: datetime = field(default_factory=utcnow)
    redactions: list[str] = field(default_factory=list)
    vector: list[float] | None = None

    @property
    def trust(self) -> float:
        return self.trust_alpha / (self.trust_alpha + self.trust_beta)

    @property
    def is_current(self) -> bool:
        return self.status == "active" and self.superseded_by is None

    def to_row(self) -> dict[str, Any]:
        # Shallow: asdict() deep-copies every float of the vector, which made writing a
        # batch cost more than indexing it.
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    def to_public(self, with_vector: bool = False) -> dict[str, Any]:
        """JSON-friendly dict (ISO dates, trust as a number) for --json and MCP output."""
        out: dict[str, Any] = {}
        for key, value in asdict(self).items():
            if key == "vector" and not with_vector:
                continue
            out[key] = value.isoformat() if isinstance(value, datetime) else value
        out["trust"] = round(self.trust, 4)
        return out

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Memory:
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in row.items() if k in known}
        for key in ("tags", "entities", "files", "links", "redactions"):
            values[key] = list(values.get(key) or [])
        vec = values.get("vector")
        if vec is not None and not isinstance(vec, list):
            values["vector"] = list(vec)
        for key in ("created_at", "valid_from", "valid_to", "last_accessed_at", "updated_at"):
            value = values.get(key)
            if isinstance(value, datetime) and value.tzinfo is None:
                values[key] = value.replace(tzinfo=UTC)
        return cls(**values)


_TS = pa.timestamp("us", tz="UTC")
_STRS = pa.list_(pa.string())

# Field order is the on-disk order. Columns added in later schema versions go in
# MIGRATIONS so that existing stores gain them with a default.
SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("project", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("text", pa.string(), nullable=False),
        pa.field("content_hash", pa.string(), nullable=False),
        pa.field("created_at", _TS, nullable=False),
        pa.field("valid_from", _TS, nullable=False),
        pa.field("source", pa.string()),
        pa.field("title", pa.string()),
        pa.field("tags", _STRS),
        pa.field("entities", _STRS),
        pa.field("files", _STRS),
        pa.field("links", _STRS),
        pa.field("agent", pa.string()),
        pa.field("session", pa.string()),
        pa.field("commit_sha", pa.string()),
        pa.field("valid_to", _TS),
        pa.field("supersedes", pa.string()),
        pa.field("superseded_by", pa.string()),
        pa.field("status", pa.string()),
        pa.field("importance", pa.float32()),
        pa.field("trust_alpha", pa.float32()),
        pa.field("trust_beta", pa.float32()),
        pa.field("access_count", pa.int32()),
        pa.field("last_accessed_at", _TS),
        pa.field("updated_at", _TS),
        pa.field("redactions", _STRS),
        pa.field("vector", pa.list_(pa.float32(), EMBED_DIM)),
    ]
)

# Existing stores gain any column missing from SCHEMA on open. Columns listed here get
# this SQL default for their old rows; any other missing column is added as nulls.
COLUMN_DEFAULTS: dict[str, str] = {
    "status": "'active'",
    "importance": "CAST(0.5 AS FLOAT)",
    "trust_alpha": "CAST(1.0 AS FLOAT)",
    "trust_beta": "CAST(1.0 AS FLOAT)",
    "access_count": "CAST(0 AS INT)",
}


def to_table(memories: list[Memory]) -> pa.Table:
    rows = [m.to_row() for m in memories]
    vectors = [row.pop("vector") for row in rows]
    at = SCHEMA.get_field_index("vector")
    table = pa.Table.from_pylist(rows, schema=SCHEMA.remove(at))
    return table.add_column(at, SCHEMA.field("vector"), _vector_column(vectors))


def _vector_column(vectors: list[list[float] | None]) -> pa.Array:
    """The vectors as one fixed-size-list array, built from a NumPy matrix rather than
    float by float. Every row needs one: LanceDB refuses a null vector anyway."""
    for v in vectors:
        if v is None:
            raise ValueError("a memory has no vector: embed it before writing it")
        if len(v) != EMBED_DIM:
            raise ValueError(f"a vector must have {EMBED_DIM} values, not {len(v)}")
    matrix = np.asarray(vectors, dtype=np.float32).reshape(-1)
    return pa.FixedSizeListArray.from_arrays(pa.array(matrix), type=SCHEMA.field("vector").type)
