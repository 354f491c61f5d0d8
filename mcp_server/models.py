"""Typed tool arguments and results: the SDK turns these into inputSchema / outputSchema and
validates against them, so an agent sees exactly what it may send and what comes back."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

# Mirrors memory.record.KINDS (a test keeps them equal); spelled out here so that building
# the tool schemas does not import the store's Arrow schema.
Kind = Literal["fact", "decision", "convention", "preference", "bug", "episode", "commit", "doc",
               "note"]
Verdict = Literal["helpful", "wrong", "outdated"]

ID_PATTERN = r"^[0-9a-f]{16}$"
MemoryId = Annotated[str, Field(pattern=ID_PATTERN, description="A memory id: 16 lowercase hex "
                                "characters, as returned by remember or recall.")]
Tag = Annotated[str, Field(min_length=1, max_length=64)]
FilePath = Annotated[str, Field(min_length=1, max_length=1024)]

MAX_TEXT_CHARS = 32_000  # memory.sanitize.MAX_TEXT_CHARS (checked by the tests)


class Similar(BaseModel):
    id: str
    similarity: float = Field(description="Cosine similarity to the new memory (0-1).")
    kind: str
    snippet: str


class Contradicted(BaseModel):
    id: str = Field(description="The existing memory this one conflicts with.")
    lowered: str = Field(description="Id of the memory whose trust was lowered.")
    reason: str = Field(description='What differs, e.g. "8080 vs 9090" or "negation".')


class RememberResult(BaseModel):
    id: str = Field(description="Id of the stored memory, or of the existing duplicate.")
    status: Literal["stored", "duplicate", "quarantined"] = Field(
        description="stored: saved and recallable. duplicate: the same text was already "
        "remembered (id is the existing memory). quarantined: saved but held back from recall "
        "until a person releases it, because it reads like an instruction to an agent.")
    duplicate_of: str | None = None
    redacted: list[str] = Field(default_factory=list, description="Kinds of secrets removed "
                                "from the text before it was stored.")
    similar: list[Similar] = Field(default_factory=list, description="Up to three existing "
                                   "memories saying nearly the same thing: if one is outdated by "
                                   "this one, call update on it instead.")
    contradicts: list[Contradicted] = Field(default_factory=list, description="Existing "
                                            "memories this one conflicts with, and whose trust "
                                            "was lowered (the less trusted side's).")


class RecallHit(BaseModel):
    id: str
    kind: str
    date: str = Field(description="When it happened or became true (YYYY-MM-DD).")
    source: str = Field(description="Who wrote it: user, agent, git, watch or import.")
    trust: float = Field(description="Bayesian trust mean (0-1); feedback moves it.")
    score: float
    snippet: str = Field(description="Start of the memory's text; call get for all of it.")
    why: str = Field(description="Which retrieval channels matched and at what rank.")


class RecallResult(BaseModel):
    hits: list[RecallHit]
    omitted: int = Field(0, description="Further hits left out to stay within the character "
                         "budget; ask with a narrower query or a smaller k.")
    chars: int = Field(description="Characters of rendered text returned.")


class MemoryRecord(BaseModel):
    id: str
    kind: str
    status: str = Field(description="active, archived or quarantined.")
    current: bool = Field(description="Active and not superseded: what recall returns.")
    title: str | None = None
    text: str = Field(description="The full text (boundary-like markup neutralised).")
    tags: list[str]
    files: list[str]
    entities: list[str]
    source: str
    agent: str | None = None
    session: str | None = None
    commit_sha: str | None = None
    created_at: str
    valid_from: str
    valid_to: str | None = None
    supersedes: str | None = None
    superseded_by: str | None = None
    importance: float
    trust: float
    access_count: int
    redacted: list[str]
    history: list[str] = Field(description="Ids of the supersede chain, oldest first (this "
                               "memory included).")


class GetResult(BaseModel):
    memories: list[MemoryRecord]
    missing: list[str] = Field(default_factory=list, description="Requested ids not found in "
                               "this project.")


class UpdateResult(BaseModel):
    id: str = Field(description="Id of the new memory that supersedes the old one.")
    supersedes: str
    status: Literal["stored", "quarantined"]
    redacted: list[str] = Field(default_factory=list)


class ForgetResult(BaseModel):
    id: str
    status: Literal["archived", "erased"]


class FeedbackResult(BaseModel):
    id: str
    verdict: Verdict
    trust: float = Field(description="Trust mean after this feedback.")
    valid_to: str | None = Field(None, description="Set when the memory was marked outdated: it "
                                 "no longer appears in briefings.")


class BriefingEntry(BaseModel):
    id: str
    section: str
    kind: str
    date: str
    trust: float
    snippet: str


class BriefingResult(BaseModel):
    project: str
    text: str = Field(description="The briefing as Markdown, within the budget.")
    entries: list[BriefingEntry]
    omitted: int = Field(description="Current memories that did not fit the budget.")
    chars: int
    budget: int
