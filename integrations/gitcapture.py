"""Commits become `commit` memories: message, author, date, changed files and a diffstat.

Commits are read with `git log` plumbing (no diff bodies). Capture is idempotent on the sha:
a commit whose sha is already in the project is skipped, and the check and the insert happen
under one cross-process lock, so two hooks firing at once never store a commit twice. A
rewritten commit (amend, rebase) is stored as superseding the memory of the commit it replaces.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memory import sanitize
from memory.errors import InputError
from memory.locking import WriteLock

if TYPE_CHECKING:  # the store (lancedb) is imported only once there is something to store
    from memory.record import Memory
    from memory.service import Memories

# A merge or pull run by a hook captures at most this many commits it brought in; older
# history is for `memctl capture git`.
HOOK_MAX_COMMITS = 200
BATCH = 64
MAX_MESSAGE_CHARS = 8_000
MAX_TITLE_CHARS = 300
MAX_LISTED_FILES = 50  # in the text; the record's files are capped at sanitize.MAX_FILES
MAX_PATH_CHARS = 1024  # what sanitize.clean_files accepts
MAX_AUTHOR_CHARS = 200
_RECORD = re.compile(r"\x1e([0-9a-f]{40,64})")
_NUMSTAT = re.compile(r"\n?(\d+|-)\t(\d+|-)\t(.*)", re.DOTALL)
# sha, parents, author name, author email, author date (strict ISO), raw message.
_FORMAT = "%x1e%H%x00%P%x00%an%x00%ae%x00%aI%x00%B%x00"


@dataclass
class FileStat:
    path: str
    added: int | None  # None for binary files
    deleted: int | None


@dataclass
class Commit:
    sha: str
    parents: list[str]
    author: str
    email: str
    date: datetime
    message: str
    files: list[FileStat] = field(default_factory=list)

    @property
    def subject(self) -> str:
        return self.message.split("\n", 1)[0].strip()


@dataclass
class CaptureReport:
    captured: list[str] = field(default_factory=list)  # memory ids
    skipped: int = 0  # commits already in the project
    superseded: int = 0  # rewritten commits whose old memory was superseded

    def to_public(self) -> dict[str, object]:
        return {"captured": len(self.captured), "skipped": self.skipped,
                "superseded": self.superseded, "ids": self.captured}


# -- reading git --------------------------------------------------------------------------
def _env() -> dict[str, str]:
    # A hook may run with git's temporary index; reading commits never needs an index.
    return {k: v for k, v in os.environ.items() if k != "GIT_INDEX_FILE"}


def git(repo: Path, *args: str, what: str = "git") -> str:
    try:
        proc = subprocess.run(["git", "-C", str(repo), "-c", "core.quotePath=false", *args],
                              capture_output=True, env=_env(), timeout=300)
    except FileNotFoundError:
        raise InputError("git is not installed (or not on PATH)") from None
    if proc.returncode != 0:
        detail = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise InputError(f"{what}: {detail[-1] if detail else 'git failed'}")
    return proc.stdout.decode("utf-8", "replace")


def repo_root(path: Path) -> Path:
    if not path.is_dir():
        raise InputError(f"no such directory: {path}")
    try:
        top = git(path, "rev-parse", "--show-toplevel").strip()
    except InputError:
        raise InputError(f"not a git work tree: {path}") from None
    return Path(top)


def resolve(repo: Path, rev: str, what: str) -> str:
    """The full sha of commit `rev`, or a clear InputError."""
    if not rev or rev.startswith("-"):
        raise InputError(f"{what}: not a revision: {rev!r}")
    try:
        return git(repo, "rev-parse", "-q", "--verify", f"{rev}^{{commit}}").strip()
    except InputError:
        raise InputError(f"{what}: unknown revision {rev!r} in {repo}") from None


def has_head(repo: Path) -> bool:
    try:
        resolve(repo, "HEAD", "HEAD")
        return True
    except InputError:
        return False


def rev_list(repo: Path, head: str, since: str | None, limit: int) -> tuple[list[str], int]:
    """Commits in since..head (all of head's history without since), oldest first, at most
    `limit` of the newest; and how many more there were."""
    spec = [head, f"^{since}"] if since else [head]
    total = int(git(repo, "rev-list", "--count", *spec).strip() or 0)
    shas = git(repo, "rev-list", "--reverse", f"--max-count={limit}", *spec).split()
    return shas, total - len(shas)


def read_commits(repo: Path, shas: Sequence[str]) -> list[Commit]:
    """Read commits (in the given order) with one `git log` call: header and --numstat."""
    if not shas:
        return []
    # A merge's files are what it brought in: its diff against the first parent.
    out = git(repo, "log", "-z", "--no-walk=unsorted", "--no-renames",
              "--diff-merges=first-parent", "--numstat", f"--format={_FORMAT}", *shas,
              "--", what="git log")
    commits: list[Commit] = []
    tokens = out.split("\0")
    i = 0
    while i < len(tokens):
        start = _RECORD.fullmatch(tokens[i])
        if not start or i + 5 >= len(tokens):
            i += 1
            continue
        parents, author, email, date, message = tokens[i + 1 : i + 6]
        commit = Commit(start.group(1), parents.split(), author, email,
                        datetime.fromisoformat(date), message.strip())
        i += 6
        while i < len(tokens) and not _RECORD.fullmatch(tokens[i]):
            stat = _NUMSTAT.fullmatch(tokens[i])
            if stat:
                added, deleted, path = stat.groups()
                commit.files.append(FileStat(path, None if added == "-" else int(added),
                                             None if deleted == "-" else int(deleted)))
            i += 1
        commits.append(commit)
    return commits


# -- commit -> memory ---------------------------------------------------------------------
def diffstat(files: Sequence[FileStat]) -> str:
    # Worded without "insertions(+)" etc., which entity extraction would take for identifiers.
    if not files:
        return "No files changed."
    added = sum(f.added or 0 for f in files)
    deleted = sum(f.deleted or 0 for f in files)
    lines = [f"Changed {len(files)} file{'' if len(files) == 1 else 's'} (+{added} -{deleted}):"]
    for f in files[:MAX_LISTED_FILES]:
        change = "binary" if f.added is None else f"+{f.added} -{f.deleted}"
        lines.append(f"  {f.path} ({change})")
    if len(files) > MAX_LISTED_FILES:
        lines.append(f"  ... and {len(files) - MAX_LISTED_FILES} more")
    return "\n".join(lines)


def commit_text(c: Commit) -> str:
    message = c.message[:MAX_MESSAGE_CHARS] or "(no commit message)"
    merge = f", merging {len(c.parents)} parents" if len(c.parents) > 1 else ""
    author, email = c.author[:MAX_AUTHOR_CHARS], c.email[:MAX_AUTHOR_CHARS]
    header = (f"Commit {c.sha[:12]} by {author} <{email}> "
              f"on {c.date.isoformat(timespec='minutes')}{merge}.")
    return f"{message}\n\n{header}\n{diffstat(c.files)}"


def memory_fields(c: Commit) -> dict[str, Any]:
    """Arguments for `Memories.prepare`/`remember` (which validate and redact them)."""
    # Paths past the record's limits stay in the text only: a capture must not fail on them.
    paths = list(dict.fromkeys(f.path for f in c.files if 0 < len(f.path) <= MAX_PATH_CHARS))
    paths = paths[: sanitize.MAX_FILES]
    return {"text": commit_text(c), "kind": "commit", "title": c.subject[:MAX_TITLE_CHARS] or None,
            "tags": ["merge"] if len(c.parents) > 1 else None, "files": paths,
            "source": "git", "commit_sha": c.sha, "valid_from": c.date, "entities": paths}


# -- storing ------------------------------------------------------------------------------
@contextmanager
def capture_lock(mem: Memories) -> Iterator[None]:
    """Serialises captures (check, then insert) across processes; other writers of the
    store are not held up, they only wait on the store's own short write lock."""
    with WriteLock(mem.store.paths.home / "git-capture.lock").hold():
        yield


def captured(mem: Memories, shas: Sequence[str]) -> dict[str, Memory]:
    """The memories (any status) of these shas already in the project, by sha."""
    from memory.store.table import sql_in

    found: dict[str, Memory] = {}
    for start in range(0, len(shas), 256):
        chunk = list(shas[start : start + 256])
        where = f"{mem._where(False)} AND {sql_in('commit_sha', chunk)}"
        for m in mem.store.table.rows(where):
            if m.commit_sha:
                found.setdefault(m.commit_sha, m)
    return found


def capture(mem: Memories, repo: Path, shas: Sequence[str], link: bool = True,
            progress: Callable[[int], None] | None = None) -> CaptureReport:
    """Store the commits not yet captured, in batches, in the order given.

    link: store each through `remember`, which links it to related memories; the back-fill
    turns it off and embeds whole batches with `insert_many` instead, which is faster."""
    report = CaptureReport()
    for start in range(0, len(shas), BATCH):
        chunk = list(shas[start : start + BATCH])
        stored = 0
        if len(captured(mem, chunk)) < len(chunk):
            mem.embedder()  # load the model before taking the lock
            with capture_lock(mem):
                done = captured(mem, chunk)  # re-check: another capture may have stored some
                commits = read_commits(repo, [s for s in chunk if s not in done])
                if link:
                    for c in commits:
                        report.captured.append(mem.remember(**memory_fields(c)).id)
                else:
                    records = [mem.prepare(**memory_fields(c)) for c in commits]
                    mem.insert_many(records)
                    report.captured.extend(m.id for m in records)
                stored = len(commits)
        report.skipped += len(chunk) - stored
        if progress:
            progress(len(chunk))
    return report


def parse_pairs(text: str) -> list[tuple[str, str]]:
    """post-rewrite's stdin: "old-sha new-sha [extra]" lines."""
    pairs = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and all(re.fullmatch(r"[0-9a-f]{40,64}", p) for p in parts[:2]):
            pairs.append((parts[0], parts[1]))
    return pairs


def capture_rewritten(mem: Memories, repo: Path, pairs: Sequence[tuple[str, str]]
                      ) -> CaptureReport:
    """For each (old, new): `new`'s memory supersedes `old`'s.

    The old commit is stored first if it is not captured yet (its own post-commit capture
    may still be waiting for the lock), so the result is the same in whatever order the
    background captures of a quick commit-then-amend run; a memory stored meanwhile is
    linked rather than stored again."""
    report = CaptureReport()
    if not pairs:
        return report
    mem.embedder()  # load the model before taking the lock

    def store(sha: str, supersedes: Memory | None = None) -> Memory | None:
        try:
            commits = read_commits(repo, [sha])
        except InputError:  # e.g. the old commit is gone already (gc)
            return None
        if not commits:
            return None
        result = mem.remember(**memory_fields(commits[0]),
                              supersedes=supersedes.id if supersedes else None)
        report.captured.append(result.id)
        return result.memory

    with capture_lock(mem):
        for old, new in pairs:
            have = captured(mem, [old, new])
            old_m, new_m = have.get(old) or store(old), have.get(new)
            if new_m is None:
                store(new, supersedes=old_m)
                report.superseded += old_m is not None
            elif old_m is not None and old_m.superseded_by is None and old_m.id != new_m.id:
                mem.store.supersede(old_m.id, new_m.id, new_m.created_at)
                if new_m.supersedes is None:
                    mem.store.update([new_m.id], {"supersedes": old_m.id})
                report.superseded += 1
            else:
                report.skipped += 1
    return report
