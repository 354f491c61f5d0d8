"""One- or two-sentence summaries of a coding session with the local generator.

The prompt is plain text: a fixed instruction with two worked examples ("Session: ...",
"Summary: In this session, ..."), then the session's text (its last `MAX_INPUT_TOKENS`
tokens), then "Summary: In this session," and greedy decoding up to the end of the line.
Instruction and examples are tokenized on their own, so their tokens are the same for every
call: their state is cached once (`prefix_cache`) and later summaries restore it instead of
evaluating it again.

Why this shape (Gemma 3 270M, greedy, on the sessions of `memory.bench.sessions`): in the
model's own chat turns, or with a single example, it copied the instruction, the example's
summary or the session's first lines back; a second example and the forced "In this
session," lead made it write a summary for each session. The summaries are mostly taken
from the session's own sentences (the small model invents less that way), and can still be
vague or wrong: they are stored as the agent's inference, not as fact.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from memory.llm.generator import Generator
    from memory.llm.prefix_cache import PrefixCache

INSTRUCTION = ("Summarise each coding session in one or two sentences: what was decided, "
               "fixed or learned.")
LEAD = "In this session,"  # every summary starts so: it keeps the model on the task
# (session, summary after LEAD): a fix and a decision.
EXAMPLES = (
    ("User: Pagination on the orders page skips rows.\n"
     "Assistant: The query used OFFSET with an unstable sort; I added ORDER BY id in "
     "orders/queries.py and the test now passes.\n"
     "User: Good, and let's use cursor pagination for new endpoints.",
     "the orders page skipped rows because the paginated query had an unstable sort; it was "
     "fixed by ordering by id in orders/queries.py, and new endpoints will use cursor "
     "pagination."),
    ("User: Should the config loader accept TOML as well as YAML?\n"
     "Assistant: Most users already write YAML, and reading TOML would need Python 3.11.\n"
     "User: Then we keep YAML only and document it.\n"
     "Assistant: I noted it in docs/config.md and removed the half-done TOML branch from "
     "config/loader.py.",
     "it was decided to keep YAML as the only config format; the TOML branch was removed "
     "from config/loader.py and docs/config.md says so."),
)
MAX_INPUT_TOKENS = 600  # the end of the session: what led up to the compaction
MAX_CHARS = 400
MIN_CHARS = 20  # a shorter continuation of LEAD is not a summary
# Openings that mean the model copied its prompt back instead of summarising.
_COPIES = tuple(t[:40].lower() for t in (INSTRUCTION, *(s for _, s in EXAMPLES)))
_LEAD = re.compile(r"^(?:session\s+)?(?:summary|user|assistant)\s*:\s*", re.I)
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")


def _body(text: str) -> str:
    """`text` on one line without markdown emphasis or a leading "Summary:"."""
    return _LEAD.sub("", " ".join(text.replace("**", "").split())).strip(" -*#")


def clean(text: str, *, cut: bool = False) -> str | None:
    """The model's continuation of `LEAD` as one paragraph of at most `MAX_CHARS`, or None
    if it is too short or copies the prompt back. A sentence said again ends it (greedy
    decoding of a small model loops). With `cut` (decoding was interrupted) an unfinished
    last sentence is dropped when there is another, else cut at a word and marked with an
    ellipsis."""
    text = _body(text)
    if text.lower().startswith(_COPIES):
        return None
    seen: set[str] = set()
    start = 0
    for m in _SENTENCE_END.finditer(text):
        sentence = " ".join(text[start:m.end()].lower().split())
        if sentence in seen:
            text, cut = text[:start].rstrip(), False
            break
        seen.add(sentence)
        start = m.end()
    if len(text) > MAX_CHARS:
        text, cut = text[:MAX_CHARS], True
    if cut:
        ends = [m.end() for m in _SENTENCE_END.finditer(text)]
        if ends and ends[-1] >= MIN_CHARS:
            text = text[: ends[-1]]
        else:  # one unfinished sentence: cut at a word and say so
            text = text[: MAX_CHARS - 1].rsplit(" ", 1)[0].rstrip(" ,;:-") + "\u2026"
    return text if len(text) >= MIN_CHARS else None


@dataclass
class Summariser:
    """Summarises session text with `gen`; `cache` keeps the instruction's state."""

    gen: Generator
    cache: PrefixCache | None = None

    def prefix_tokens(self) -> list[int]:
        """Instruction and examples: the same tokens for every call (this is what is cached)."""
        shots = "".join(f"Session:\n{session}\nSummary: {LEAD} {summary}\n\n"
                        for session, summary in EXAMPLES)
        return self.gen.tokenize(f"{INSTRUCTION}\n\n{shots}Session:\n")

    def prompt_tokens(self, text: str) -> tuple[list[int], int]:
        """The whole prompt's tokens for `text`, and where the instruction ends."""
        head = self.prefix_tokens()
        # Only the end is used: tokenizing a whole long transcript would be wasted work.
        body = self.gen.tokenize(text.strip()[-MAX_INPUT_TOKENS * 8:], bos=False)
        # Special-token text in the session ("<end_of_turn>" pasted in a message) would be
        # parsed as a control token: such tokens print as nothing, and are left out.
        body = [t for t in body if self.gen.piece(t)][-MAX_INPUT_TOKENS:]
        tail = self.gen.tokenize(f"\nSummary: {LEAD}", bos=False)
        return head + body + tail, len(head)

    def summarise(self, text: str, *, max_tokens: int = 64, deadline: float | None = None
                  ) -> str | None:
        """A summary of `text` (starting with `LEAD`), or None when nothing usable came out
        before `deadline` (a `time.monotonic()` value) or within `max_tokens`."""
        from memory.llm.prefix_cache import prefill

        def late() -> bool:
            return deadline is not None and time.monotonic() >= deadline

        if not text.strip() or late():
            return None
        gen = self.gen
        tokens, instruction_end = self.prompt_tokens(text)
        out: list[int] = []
        said = ""
        cut = True
        with gen.lock:
            try:
                logits = prefill(gen, self.cache, tokens, save=(instruction_end,))
                assert logits is not None
                while len(out) < max_tokens and not late():
                    token = int(np.argmax(logits))
                    if gen.is_end(token):
                        cut = False
                        break
                    out.append(token)
                    said = gen.detokenize(out)
                    # The summary is one line: a line break after some text ends it (the
                    # model goes on with another "Session:" of its own).
                    done = said[: said.rfind("\n")] if "\n" in said else ""
                    if _body(done):
                        said, cut = done, False
                        break
                    logits = gen.eval([token])
            finally:
                gen.clear(0)
        summary = clean(said, cut=cut) if said else None
        return f"{LEAD} {summary}" if summary else None
