"""Which files hold project knowledge, and how a document splits into sections.

The rules and the splitting are pure functions of paths and text; the few functions that
touch the disk (listing files, asking git what it ignores, reading one file safely) are at
the end of the module.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

# A section longer than this is stored in several parts: one memory should be one idea that
# recall can quote, and the embedder only reads the first few hundred tokens anyway.
MAX_CHUNK_CHARS = 4_000
# Knowledge files are written by people; a bigger file is generated or a data dump.
MAX_FILE_BYTES = 1_000_000
MAX_TITLE_CHARS = 300  # the store's limit on titles
GIT_TIMEOUT_S = 60

AGENT_FILES = frozenset({"CLAUDE.md", "AGENTS.md"})  # read by agents, at any depth
MARKDOWN_SUFFIXES = (".md", ".markdown")
README_SUFFIXES = ("", ".md", ".markdown", ".rst", ".txt")
DOC_DIRS = frozenset({"docs", "doc"})  # top-level documentation folders
ADR_DIRS = frozenset({"adr", "adrs", "decisions"})  # architecture decision records, anywhere
# Never knowledge, whatever the scope: dependency trees and version-control internals.
NEVER_DIRS = frozenset({".git", "node_modules"})
# Editors' swap, lock, backup and temporary files (vim writes "4913" to test a directory).
_TEMP_NAME = re.compile(r"^(?:\.|#|~\$|4913$)|~$|\.(?:swp|swo|swx|tmp|bak|orig)$", re.I)


# -- which files ------------------------------------------------------------------------
def is_temp_name(name: str) -> bool:
    """Hidden, swap, lock, backup and temporary files that editors write next to a file."""
    return bool(_TEMP_NAME.search(name))


def is_markdown(rel: str) -> bool:
    return rel.lower().endswith(MARKDOWN_SUFFIXES)


def _parts(rel: str) -> list[str] | None:
    parts = rel.split("/")
    if any(p in ("", ".", "..") for p in parts) or any(p in NEVER_DIRS for p in parts):
        return None
    return parts


def is_default_knowledge(rel: str) -> bool:
    """CLAUDE.md, AGENTS.md, a top-level README*, markdown under docs/ or doc/, and ADRs
    (markdown under any adr/, adrs/ or decisions/ folder). `rel` is a POSIX path relative
    to the project root."""
    parts = _parts(rel)
    if parts is None or is_temp_name(parts[-1]):
        return False
    name, dirs = parts[-1], parts[:-1]
    # Hidden folders hold tools' state, except Claude Code's own settings folder.
    if any(d.startswith(".") and d != ".claude" for d in dirs):
        return False
    if name in AGENT_FILES:
        return True
    if not dirs:
        stem, dot, suffix = name.partition(".")
        return stem.upper() == "README" and (f"{dot}{suffix}".lower() in README_SUFFIXES
                                             or is_markdown(name))
    if not is_markdown(name):
        return False
    return dirs[0] in DOC_DIRS or any(d.lower() in ADR_DIRS for d in dirs)


@dataclass(frozen=True)
class Scope:
    """The files a watcher keeps in sync: the default knowledge files plus `extra` paths
    (relative to the root): a path names that file, or every markdown file under it."""

    extra: frozenset[str] = frozenset()

    def covers(self, rel: str) -> bool:
        parts = _parts(rel)
        if parts is None or is_temp_name(parts[-1]):
            return False
        if is_default_knowledge(rel):
            return True
        for e in self.extra:
            if rel == e or (is_markdown(rel) and (e == "" or rel.startswith(e + "/"))):
                return True
        return False


# -- splitting ----------------------------------------------------------------------------
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t]*$")
_CLOSING_HASHES = re.compile(r"(?:^|[ \t]+)#+$")


@dataclass(frozen=True)
class Chunk:
    """One section (or one part of a long section) of a document."""

    path: str  # POSIX path relative to the project root
    label: str  # heading path, "Install > Linux"; "" for the text before the first heading
    part: int  # 1 for the first part; a long section's later parts are 2, 3...
    body: str

    @property
    def where(self) -> str:
        suffix = f"(part {self.part})" if self.part > 1 else ""
        return " ".join(s for s in (self.label, suffix) if s)

    @property
    def key(self) -> str:
        return f"{self.path}#{self.where}"

    @property
    def title(self) -> str:
        """What identifies the chunk in the store: unique within its document."""
        title = f"{self.path} — {self.where}" if self.where else self.path
        if len(title) <= MAX_TITLE_CHARS:
            return title
        digest = hashlib.sha256(self.key.encode("utf-8", "surrogatepass")).hexdigest()[:10]
        return f"{title[: MAX_TITLE_CHARS - 14]}… #{digest}"

    @property
    def text(self) -> str:
        # The location leads the text: recall shows text only, and it keeps two files with
        # the same section (AGENTS.md copied to CLAUDE.md) from being one duplicate.
        return f"{self.title}\n\n{self.body}"


class _Fences:
    """Tracks whether a line is inside a fenced code block (CommonMark rules, simplified)."""

    def __init__(self) -> None:
        self.open: str | None = None  # the opening fence's run of ` or ~

    def step(self, line: str) -> bool:
        """Feed one line; True when the line is part of a fence (either boundary included)."""
        m = _FENCE.match(line)
        if self.open is None:
            if m and not (m.group(1)[0] == "`" and "`" in m.group(2)):
                self.open = m.group(1)
                return True
            return False
        if m and m.group(1)[0] == self.open[0] and len(m.group(1)) >= len(self.open) \
                and not m.group(2).strip():
            self.open = None
        return True


def heading(line: str) -> tuple[int, str] | None:
    """(level, text) of an ATX heading line, else None. `#tag` (no space) is no heading."""
    m = _ATX.match(line)
    if not m:
        return None
    text = _CLOSING_HASHES.sub("", m.group(2) or "").strip()
    return len(m.group(1)), text


def _front_matter_end(lines: Sequence[str]) -> int:
    """Index after a YAML front matter block (its `# comments` are not headings), else 0."""
    if not lines or lines[0].rstrip() != "---":
        return 0
    for i in range(1, len(lines)):
        if lines[i].rstrip() in ("---", "..."):
            return i + 1
    return 0


def sections(text: str) -> list[tuple[tuple[str, ...], str]]:
    """(heading path, body) for each section of a markdown text, in order; the text before
    the first heading has the empty path. Bodies exclude the heading line itself."""
    lines = normalize_newlines(text).split("\n")
    fences = _Fences()
    stack: list[tuple[int, str]] = []
    out: list[tuple[tuple[str, ...], list[str]]] = [((), [])]
    start = _front_matter_end(lines)
    out[0][1].extend(lines[:start])
    for line in lines[start:]:
        h = None if fences.step(line) else heading(line)
        if h is None:
            out[-1][1].append(line)
            continue
        level, title = h
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, title))
        out.append((tuple(t for _, t in stack), []))
    return [(path, "\n".join(body).strip("\n").rstrip()) for path, body in out]


def normalize_newlines(text: str) -> str:
    return text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


def _blocks(body: str) -> list[str]:
    """Paragraphs separated by blank lines; a fenced block is never cut at its blank lines."""
    blocks: list[list[str]] = [[]]
    fences = _Fences()
    for line in body.split("\n"):
        inside = fences.step(line)
        if not line.strip() and not inside:
            if blocks[-1]:
                blocks.append([])
            continue
        blocks[-1].append(line)
    return ["\n".join(b) for b in blocks if b]


def _hard_split(block: str, limit: int) -> list[str]:
    """A block over the limit, cut between lines, and within a line when one is too long."""
    if len(block) <= limit:
        return [block]
    pieces: list[str] = []
    current = ""
    for line in block.split("\n"):
        while len(line) > limit:
            if current:
                pieces.append(current)
                current = ""
            pieces.append(line[:limit])
            line = line[limit:]
        if current and len(current) + 1 + len(line) > limit:
            pieces.append(current)
            current = line
        else:
            current = f"{current}\n{line}" if current else line
    if current:
        pieces.append(current)
    return pieces


def split_long(body: str, limit: int = MAX_CHUNK_CHARS) -> list[str]:
    """Cut a body into parts of at most `limit` characters, at paragraph boundaries when
    possible, so that an edit near the end leaves the first parts as they were."""
    if len(body) <= limit:
        return [body]
    parts: list[str] = []
    current = ""
    for block in _blocks(body):
        for piece in _hard_split(block, limit):
            if current and len(current) + 2 + len(piece) > limit:
                parts.append(current)
                current = piece
            else:
                current = f"{current}\n\n{piece}" if current else piece
    if current:
        parts.append(current)
    return parts


def split_document(text: str, rel: str, limit: int = MAX_CHUNK_CHARS) -> list[Chunk]:
    """The chunks of a knowledge file: markdown by heading, anything else as one section.
    Empty sections are skipped; a heading path that repeats gets " (2)", " (3)"..."""
    if is_markdown(rel):
        parts = sections(text)
    else:
        parts = [((), normalize_newlines(text).strip("\n").rstrip())]
    chunks: list[Chunk] = []
    seen: dict[str, int] = {}
    for path, body in parts:
        if not body.strip():
            continue
        label = " > ".join(path)
        seen[label] = seen.get(label, 0) + 1
        if seen[label] > 1:
            label = f"{label} ({seen[label]})".lstrip()
        for n, piece in enumerate(split_long(body, limit), start=1):
            chunks.append(Chunk(rel, label, n, piece))
    return chunks


@dataclass(frozen=True)
class Skip:
    """A file that is not synced, and why (shown to the user)."""

    reason: str


def decode_doc(data: bytes) -> str | Skip:
    """The text of a knowledge file, or why it is not one (binary, not UTF-8)."""
    if b"\0" in data:
        return Skip("binary file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return Skip("not UTF-8 text")


# -- the disk -----------------------------------------------------------------------------
def _git(root: Path, args: Sequence[str], data: bytes | None = None
         ) -> subprocess.CompletedProcess[bytes] | None:
    if not (root / ".git").exists():
        return None
    try:
        return subprocess.run(["git", "-C", str(root), *args], input=data,
                              capture_output=True, timeout=GIT_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None


def list_files(root: Path, prefix: str = "") -> list[str]:
    """Every file under `root` (or its folder `prefix`) that is not ignored, as POSIX paths
    relative to `root`: git's view of the worktree (tracked plus untracked-not-ignored) in a
    repository, else a walk that skips .git/ and node_modules/."""
    spec = ["--", f":(literal){prefix}"] if prefix else []
    proc = _git(root, ["ls-files", "-z", "--cached", "--others", "--exclude-standard", *spec])
    if proc is not None and proc.returncode == 0:
        return sorted({os.fsdecode(p) for p in proc.stdout.split(b"\0") if p})
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root / prefix):
        dirnames[:] = sorted(d for d in dirnames if d not in NEVER_DIRS)
        base = Path(dirpath).relative_to(root).as_posix()
        found += [name if base == "." else f"{base}/{name}" for name in filenames]
    return sorted(found)


def ignored(root: Path, rels: Iterable[str]) -> set[str]:
    """Which of `rels` git ignores (.gitignore, info/exclude, global excludes). Tracked files
    are never ignored. Outside a git repository nothing is."""
    wanted = [r for r in rels if r]
    if not wanted:
        return set()
    proc = _git(root, ["check-ignore", "-z", "--stdin"],
                b"\0".join(os.fsencode(r) for r in wanted))
    # Exit status 1 means "none ignored"; anything else but 0 is git failing.
    if proc is None or proc.returncode not in (0, 1):
        return set()
    return {os.fsdecode(p) for p in proc.stdout.split(b"\0") if p}


def read_doc(root: Path, rel: str, max_bytes: int = MAX_FILE_BYTES) -> str | Skip | None:
    """The text of `root/rel`; None when it does not exist (a dangling link included);
    a Skip when it must not be synced: a link out of the project, not a regular file, too
    large, binary or not UTF-8."""
    path = root / rel
    try:
        real = path.resolve(strict=True)
    except FileNotFoundError:
        return None
    except (OSError, RuntimeError) as exc:  # a link loop, a permission error on the way
        return Skip(f"cannot read: {exc}")
    if not real.is_relative_to(root.resolve()):
        return Skip("a link to outside the project")
    try:
        if not real.is_file():
            return Skip("not a regular file")
        size = real.stat().st_size
        if size > max_bytes:
            return Skip(f"too large ({size:,} bytes; the limit is {max_bytes:,})")
        return decode_doc(real.read_bytes())
    except OSError as exc:
        return Skip(f"cannot read: {exc.strerror or exc}")
