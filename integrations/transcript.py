"""Claude Code transcripts: reading new lines, and picking out what is worth remembering.

A transcript is JSON Lines: one object per line; conversation lines have `type` "user" or
"assistant" and a `message` whose `content` is a string or a list of blocks (`text`,
`tool_use`, `tool_result`, `thinking`, `image`...). Other lines (summaries, snapshots, queue
operations) and anything malformed are skipped.

Only what people and the agent *said* is considered: text blocks, never tool input or output
(file contents, command output), thinking, sub-agent side chains, compaction summaries, or
context that hooks injected (memctl's own briefing and recalled memories: capturing those
again would feed the store its own output).

Extraction is heuristic and conservative, sentence by sentence:
- decision: "we decided / chose / agreed", "let's use / go with / switch to", "going with",
  "we'll use", "decision:";
- convention: "always ... / never ..." as a rule, "from now on", "going forward", "by
  convention", "the convention is", "make sure to always";
- bug: a problem ("bug", "error", "fails", "traceback", "crash", "broken") together with its
  fix or cause ("fixed by", "the fix", "root cause", "caused by"), in one sentence or a
  problem sentence followed closely by a fix sentence.
Questions, hedges ("maybe", "should we"), code blocks and very short or long sentences are
never captured. Everything here is pure apart from `read_new`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# How much of a transcript one run reads (bytes); the rest waits for the next run.
MAX_READ = 8 * 1024 * 1024
MIN_CHARS = 25
MAX_CHARS = 400
MAX_MEMORY_CHARS = 700
# A fix is paired with a problem mentioned at most this many sentences earlier.
FIX_WINDOW = 6

# Markers of context injected by hooks (ours and Claude Code's own wrappers).
INJECTED = ("Memories from this project's store", "memctl briefing", "[memory ")
_WRAPPER_TAG = re.compile(
    r"<(system-reminder|command-name|command-message|command-args|local-command-stdout|"
    r"local-command-stderr|user-prompt-submit-hook|bash-input|bash-stdout|bash-stderr|"
    r"session-start-hook)>.*?</\1>", re.S)
_FENCE = re.compile(r"```.*?(?:```|$)|~~~.*?(?:~~~|$)", re.S)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z`\"'(\[*_])")
_MARKUP = re.compile(r"^\s*(?:[-*+]\s+|\d+[.)]\s+|#{1,6}\s+|>\s*)+")
_EMPHASIS = re.compile(r"\*\*|__")

_I = re.I
_QUESTION_START = re.compile(
    r"^(?:should|shall|could|can|would|will|do|does|did|is|are|was|were|what|which|why|how|"
    r"when|where|who|any idea)\b", _I)
_HEDGE = re.compile(r"\b(?:maybe|perhaps|might|i wonder|not sure|if we|whether|"
                    r"do you want|would you like|we could|you could|i could)\b", _I)
_DECISION = re.compile(
    r"\b(?:we|i|team)\s+(?:have\s+|'ve\s+|had\s+)?(?:decided|chose|chosen|agreed|settled\s+on|"
    r"opted)\b"
    r"|\blet'?s\s+(?:use|go\s+with|switch\s+to|stick\s+with|keep|adopt|move\s+to|"
    r"standardi[sz]e\s+on)\b"
    r"|\b(?:we're|we\s+are|i'm|i\s+am)\s+going\s+(?:to\s+go\s+)?with\b|^going\s+with\b"
    r"|\bwe(?:'ll|\s+will)\s+(?:use|go\s+with|stick\s+with|switch\s+to|keep)\b"
    r"|\bdecision\s*:|\bdecided\s+to\b", _I)
_CONVENTION = re.compile(
    r"^(?:always|never|don't\s+ever|do\s+not\s+ever|make\s+sure\s+to\s+always)\b"
    r"|\b(?:we|you|everyone|tests?|code|commits?|it)\s+(?:should\s+|must\s+)?(?:always|never)\s+\w+"
    r"|\b(?:must|should)\s+(?:always|never)\b"
    r"|\bfrom\s+now\s+on\b|\bgoing\s+forward\b|\bby\s+convention\b|\bthe\s+convention\s+is\b"
    r"|\bconvention\s*:|\bas\s+a\s+rule\b", _I)
# "Let's use grep to find the callers" is an action in progress, not a project decision.
_INSTRUMENTAL = re.compile(
    r"\blet'?s\s+(?:use|try)\b.{0,60}?\bto\s+(?:check|find|see|look|verify|inspect|test|run|"
    r"search|debug|print|read|get|confirm|understand|figure|list|show|locate|reproduce)\b"
    r"|^never\s*mind\b", _I)
_PROBLEM = re.compile(
    r"\b(?:bug|error|exception|fail(?:s|ed|ing|ure)?|traceback|crash(?:es|ed|ing)?|broken|"
    r"regression|race\s+condition|deadlock|leak(?:s|ed)?|hangs?|timed?\s+out)\b", _I)
_FIX = re.compile(
    r"\b(?:fixed|fix(?:ed)?\s+(?:it\s+|this\s+|that\s+)?by|the\s+fix\s+(?:is|was)|"
    r"root\s+cause|caused\s+by|was\s+due\s+to|resolved\s+by|solved\s+by|"
    r"the\s+solution\s+(?:is|was))\b|\bfix\s*:", _I)


@dataclass(frozen=True)
class Turn:
    role: str  # "user" or "assistant"
    text: str


@dataclass
class Chunk:
    turns: list[Turn] = field(default_factory=list)
    end: int = 0  # byte offset just after the last complete line read
    size: int = 0  # bytes read (the chunk started at `end - size`)
    lines: int = 0
    bad_lines: int = 0


@dataclass(frozen=True)
class Candidate:
    kind: str  # decision | convention | bug
    text: str
    source: str  # "user" or "agent" (who said it)

    def to_public(self) -> dict[str, str]:
        return {"kind": self.kind, "text": self.text, "source": self.source}


# -- reading ---------------------------------------------------------------------------------
def read_new(path: Path, offset: int, max_bytes: int = MAX_READ) -> Chunk:
    """Complete lines of the transcript from `offset`, at most `max_bytes` of them.

    A file shorter than `offset` was replaced: it is read from the start. A partial last line
    (still being written) is left for the next read. A single line longer than `max_bytes`
    is skipped whole.
    """
    with path.open("rb") as fh:
        size = fh.seek(0, 2)
        if offset > size:
            offset = 0
        fh.seek(offset)
        data = fh.read(max_bytes)
    cut = data.rfind(b"\n") + 1
    if cut == 0:
        # No complete line: wait for more, unless one line alone exceeds the budget.
        skipped = len(data) if len(data) >= max_bytes else 0
        return Chunk(end=offset + skipped, size=skipped, bad_lines=1 if skipped else 0)
    chunk = parse_lines(data[:cut].splitlines())
    chunk.end, chunk.size = offset + cut, cut
    return chunk


def parse_lines(lines: Iterable[bytes | str]) -> Chunk:
    chunk = Chunk()
    for raw in lines:
        if not raw.strip():
            continue
        chunk.lines += 1
        try:
            entry = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            chunk.bad_lines += 1
            continue
        turn = turn_of(entry) if isinstance(entry, dict) else None
        if turn is not None:
            chunk.turns.append(turn)
    return chunk


def turn_of(entry: dict) -> Turn | None:
    """The spoken text of one transcript line, or None (tool traffic, metadata, noise)."""
    kind = entry.get("type")
    message = entry.get("message")
    if kind not in ("user", "assistant") or not isinstance(message, dict):
        return None
    if entry.get("isSidechain") or entry.get("isMeta") or entry.get("isCompactSummary"):
        return None
    content = message.get("content")
    if isinstance(content, str):
        parts = [content]
    elif isinstance(content, list):
        parts = [b.get("text", "") for b in content
                 if isinstance(b, dict) and b.get("type") == "text"
                 and isinstance(b.get("text"), str)]
    else:
        return None
    text = _WRAPPER_TAG.sub(" ", "\n\n".join(parts)).strip()
    if not text or any(marker in text for marker in INJECTED):
        return None
    return Turn(kind, text)


# -- extraction ------------------------------------------------------------------------------
def sentences(text: str) -> list[str]:
    """Prose sentences of `text`: code blocks dropped, list markers and emphasis removed."""
    out = []
    for line in _FENCE.sub("\n", text).splitlines():
        for piece in _SENTENCE_END.split(_EMPHASIS.sub("", _MARKUP.sub("", line))):
            if piece.strip():
                out.append(piece.strip())
    return out


def _statement(s: str) -> bool:
    """A plain statement of a sensible length (not a question, hedge or fragment)."""
    if not MIN_CHARS <= len(s) <= MAX_CHARS or s.endswith("?") or s.endswith(":"):
        return False
    return not (_QUESTION_START.match(s) or _HEDGE.search(s))


def classify(s: str) -> str | None:
    """decision, convention or bug (a problem with its fix in one sentence), else None."""
    if not _statement(s) or _INSTRUMENTAL.search(s):
        return None
    if _PROBLEM.search(s) and _FIX.search(s):
        return "bug"
    if _DECISION.search(s):
        return "decision"
    if _CONVENTION.search(s):
        return "convention"
    return None


def _source(role: str) -> str:
    return "user" if role == "user" else "agent"


def _join(first: str, second: str) -> str:
    text = f"{first.rstrip(' .;')}. {second}"
    return text if len(text) <= MAX_MEMORY_CHARS else text[: MAX_MEMORY_CHARS - 1] + "\u2026"


def extract(turns: Sequence[Turn], limit: int = 10) -> list[Candidate]:
    """Candidate memories from `turns`, in conversation order, at most `limit`, no repeats."""
    found: list[Candidate] = []
    seen: set[str] = set()
    # The latest problem statement not yet paired with a fix: (sentence, position).
    problem: tuple[str, int] | None = None
    # A bug just captured, which the next sentence may complete with more of its fix.
    open_bug: tuple[int, int] | None = None  # (index in found, position)
    position = 0
    for turn in turns:
        for s in sentences(turn.text):
            position += 1
            fix = _statement(s) and bool(_FIX.search(s))
            if open_bug and open_bug[1] == position - 1 and fix and not _DECISION.search(s):
                index = open_bug[0]
                found[index] = Candidate("bug", _join(found[index].text, s), found[index].source)
                open_bug = (index, position)
                continue
            kind, text = classify(s), s
            if kind is None and fix and problem and position - problem[1] <= FIX_WINDOW:
                kind, text = "bug", _join(problem[0], s)
            if kind is None:
                if _statement(s) and _PROBLEM.search(s):
                    problem = (s, position)
                continue
            if kind == "bug":
                problem = None
            key = " ".join(text.lower().split())
            if key in seen:
                continue
            seen.add(key)
            found.append(Candidate(kind, text, _source(turn.role)))
            open_bug = (len(found) - 1, position) if kind == "bug" else None
            if len(found) >= limit:
                return found
        open_bug = None  # a bug's fix is completed within the turn that states it
    return found
