"""Rescore the top recall candidates with the local generator (optional, off by default).

The model reads a fixed few-shot instruction, the query, then one candidate, and answers
"yes" or "no"; a candidate's score is the log-odds of " yes" over " no". The instruction and
the query form a prefix shared by every candidate: it is evaluated once (or restored from
the prefix cache: the instruction alone is cached across queries, instruction + query for
repeated queries), copied into one sequence per candidate, and the candidates are evaluated
together in batched llama.cpp calls. The model's order is then fused with recall's order by
reciprocal rank, so a confident model moves hits up without discarding recall's evidence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from memory.llm.generator import Generator
    from memory.llm.prefix_cache import PrefixCache
    from memory.recall import Hit

INSTRUCTION = """Decide whether the passage helps answer the question. Answer yes or no.

Question: What instrument does Sam play?
Passage: Sam: I've been practising the violin every evening this month.
Relevant: yes

Question: Where did Anna travel in May?
Passage: Anna: My cat knocked the plant off the shelf again this morning.
Relevant: no

Question: Which database did we choose for the queue?
Passage: We decided to use redis for the job queue because it avoids a global lock.
Relevant: yes

Question: When did Tom start his new job?
Passage: Tom: The concert last night was amazing, the drummer was incredible.
Relevant: no
"""
MAX_PASSAGE_TOKENS = 96
RRF_K = 10  # smaller than recall's 60: the model's top few count for more


@dataclass
class Reranker:
    """Scores (query, passage) pairs with `gen`; `cache` keeps prefix states across calls."""

    gen: Generator
    cache: PrefixCache | None = None
    top: int = 20
    weight: float = 1.0  # the model's share in the fused order (recall's is 1)
    answer_ids: tuple[int, int] = field(init=False)

    def __post_init__(self) -> None:
        yes = self.gen.tokenize(" yes", bos=False)
        no = self.gen.tokenize(" no", bos=False)
        self.answer_ids = (yes[0], no[0])

    def prefix_tokens(self, query: str) -> tuple[list[int], int]:
        """Tokens of instruction + query, and where the instruction ends."""
        head = self.gen.tokenize(INSTRUCTION)
        rest = self.gen.tokenize(f"\nQuestion: {' '.join(query.split())}\n", bos=False,
                                 special=False)
        return head + rest, len(head)

    def passage_tokens(self, text: str) -> list[int]:
        # A memory's text is data: "<end_of_turn>" in it must not end the prompt's turn.
        tokens = self.gen.tokenize(" ".join(text.split()), bos=False,
                                   special=False)[:MAX_PASSAGE_TOKENS]
        return (self.gen.tokenize("Passage: ", bos=False) + tokens
                + self.gen.tokenize("\nRelevant:", bos=False))

    def score(self, query: str, passages: Sequence[str], *, use_cache: bool = True
              ) -> list[float]:
        """Log-odds of relevance for each passage (higher is more relevant)."""
        from memory.llm.prefix_cache import prefill

        if not passages:
            return []
        prefix, instruction_end = self.prefix_tokens(query)
        suffixes = [self.passage_tokens(p) for p in passages]
        gen = self.gen
        scores: list[float] = []
        with gen.lock:
            cache = self.cache if use_cache else None
            prefill(gen, cache, prefix, seq=0, save=(instruction_end, len(prefix)),
                    need_logits=False)
            try:
                width = gen.n_seq - 1
                for start in range(0, len(suffixes), width):
                    group = suffixes[start:start + width]
                    seqs = list(range(1, len(group) + 1))
                    for s in seqs:
                        gen.copy_seq(0, s)
                    logits = gen.eval_many(group, seqs)
                    for s in seqs:
                        gen.clear(s)
                    yes, no = self.answer_ids
                    scores += [float(lg[yes] - lg[no]) for lg in logits]
            finally:
                gen.clear()
        return scores

    def rerank(self, query: str, hits: list[Hit]) -> list[Hit]:
        """`hits` with the first `top` reordered by recall and model ranks fused."""
        head, tail = hits[: self.top], hits[self.top:]
        if len(head) < 2:
            return hits
        scores = self.score(query, [h.memory.text for h in head])
        model_rank = {i: r for r, i in enumerate(np.argsort(-np.asarray(scores)), 1)}
        fused = [(1.0 / (RRF_K + r) + self.weight / (RRF_K + model_rank[r - 1]), r - 1)
                 for r in range(1, len(head) + 1)]
        fused.sort(key=lambda x: (-x[0], x[1]))
        return [replace(head[i], ranks={**head[i].ranks, "rerank": model_rank[i]})
                for _, i in fused] + tail


EXPANSION_PROMPT = """Write search keywords for each question.

Question: What instrument does Sam play?
Keywords: music, violin, guitar, piano, practice, lessons

Question: Where did Anna travel in May?
Keywords: trip, vacation, visited, city, country, flight

Question: Why did we switch the queue?
Keywords: redis, queue, decided, latency, lock, migration
"""
MAX_EXPANSION_TOKENS = 16


@dataclass
class QueryExpander:
    """Adds model-written keywords to short queries (at most `max_words` words)."""

    gen: Generator
    cache: PrefixCache | None = None
    max_words: int = 6

    def expand(self, query: str) -> str:
        from memory.llm.prefix_cache import prefill

        words = query.split()
        if not words or len(words) > self.max_words:
            return query
        gen = self.gen
        head = gen.tokenize(EXPANSION_PROMPT)
        tokens = head + gen.tokenize(f"\nQuestion: {' '.join(words)}\nKeywords:", bos=False,
                                     special=False)
        newline = gen.tokenize("\n", bos=False)[-1]
        with gen.lock:
            try:
                logits = prefill(gen, self.cache, tokens, save=(len(head),))
                assert logits is not None
                out: list[int] = []
                for _ in range(MAX_EXPANSION_TOKENS):
                    token = int(np.argmax(logits))
                    if token == newline or gen.is_end(token):
                        break
                    out.append(token)
                    logits = gen.eval([token])
            finally:
                gen.clear(0)
        extra = gen.detokenize(out).split("\n")[0].replace(",", " ").strip()
        return f"{query} {extra}" if extra else query
