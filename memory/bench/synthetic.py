"""Synthetic but realistic project memories: identifiers, paths, packages, dates, varied length."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

WORDS = (
    "config", "cache", "token", "session", "user", "request", "retry", "upload", "queue",
    "worker", "index", "schema", "migration", "parser", "router", "handler", "client",
    "server", "auth", "billing", "invoice", "report", "export", "import", "search", "vector",
    "embed", "model", "store", "lock", "event", "hook", "commit", "branch", "deploy", "build",
    "test", "fixture", "mock", "timeout", "limit", "budget", "metric", "trace", "log", "error",
    "warning", "payload",
)
DIRS = ("src", "lib", "app", "api", "core", "services", "utils", "tests", "scripts", "docs")
EXTS = (".py", ".ts", ".go", ".rs", ".md", ".toml", ".yaml")
PACKAGES = ("numpy", "fastapi", "pydantic", "httpx", "sqlalchemy", "redis", "celery", "boto3",
            "react", "express", "tokio", "serde", "pytest", "ruff", "lancedb", "tantivy")
KINDS = ("fact", "decision", "convention", "preference", "bug", "episode", "commit", "doc", "note")
TEMPLATES = {
    "decision": "We decided to use {pkg} for {w1} {w2} because {reason}; see {path}.",
    "convention": "Always call {ident} before {ident2} in {path}; {reason}.",
    "bug": "Bug: {ident} raises {err} when {w1} {w2} is empty; fixed in {path} by {reason}.",
    "fact": "The {w1} {w2} lives in {path} and is configured by {const}.",
    "preference": "Prefer {ident} over {ident2} for {w1} handling; {reason}.",
    "episode": "Debugged the {w1} {w2} flake with the team; {ident} was the culprit ({reason}).",
    "commit": "{verb} {w1} {w2} in {path}: {reason}. Touches {ident} and {ident2}.",
    "doc": "## {W1} {W2}\n{ident} reads {const} from {path}; {reason}. Requires {pkg}.",
    "note": "Remember: {ident} in {path} needs {pkg} >= 2; {reason}.",
}
REASONS = ("it halves p95 latency", "the old path leaked file handles", "CI was flaky on macOS",
           "it keeps the schema migration idempotent", "the vendor SDK retries on 429",
           "we need deterministic ordering for tests", "it avoids a global lock",
           "users hit the timeout on large uploads", "it matches the upstream API")
ERRORS = ("KeyError", "TimeoutError", "ValueError", "PermissionError", "IntegrityError")
VERBS = ("Fix", "Add", "Refactor", "Remove", "Speed up", "Document")


def _ident(r: random.Random) -> str:
    a, b = r.sample(WORDS, 2)
    style = r.random()
    if style < 0.4:
        return f"{a}{b.capitalize()}"
    if style < 0.8:
        return f"{a}_{b}"
    return f"{a.capitalize()}{b.capitalize()}"


def _path(r: random.Random) -> str:
    parts = [r.choice(DIRS), *r.sample(WORDS, r.randint(1, 2))]
    return "/".join(parts) + r.choice(EXTS)


def memory_text(r: random.Random, kind: str) -> str:
    w1, w2 = r.sample(WORDS, 2)
    text = TEMPLATES[kind].format(
        pkg=r.choice(PACKAGES), w1=w1, w2=w2, W1=w1.capitalize(), W2=w2, reason=r.choice(REASONS),
        path=_path(r), ident=_ident(r), ident2=_ident(r), err=r.choice(ERRORS),
        const=f"{w1.upper()}_{w2.upper()}", verb=r.choice(VERBS))
    # Varied lengths: some memories carry a longer explanation.
    extra = r.choices((0, 1, 3), weights=(6, 3, 1))[0]
    for _ in range(extra):
        text += f" Also {r.choice(REASONS)} when {_ident(r)} touches {_path(r)}."
    return text


def generate(n: int, seed: int = 7, now: datetime | None = None) -> list[tuple[str, str, datetime]]:
    """(kind, text, when) triples spread over the last two years."""
    r = random.Random(seed)
    now = now or datetime.now(UTC)
    out = []
    for _ in range(n):
        kind = r.choice(KINDS)
        out.append((kind, memory_text(r, kind), now - timedelta(days=r.uniform(0, 730))))
    return out


def queries(n: int, seed: int = 11) -> list[str]:
    r = random.Random(seed)
    shapes = (
        lambda: f"why do we use {r.choice(PACKAGES)} for {r.choice(WORDS)}",
        lambda: _ident(r),
        lambda: _path(r),
        lambda: f"{r.choice(ERRORS)} in {_ident(r)}",
        lambda: f"what did we decide about the {r.choice(WORDS)} {r.choice(WORDS)} last month",
        lambda: f"how is {r.choice(WORDS)} configured",
    )
    return [r.choice(shapes)() for _ in range(n)]
