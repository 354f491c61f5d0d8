"""Does a new memory contradict an existing one? Pure, conservative text heuristics.

Called only for close neighbours (the caller gates on embedding similarity), so the question
here is narrow: given two statements about the same topic, do they assert incompatible things?
Three patterns are recognised, sentence by sentence:

- **value**: the same statement with one value replaced by another for the same key: a
  number, version, port, time, path, file name or URL ("the API listens on port 8080" /
  "... on port 9090"). Bare identifiers do not count: two functions named in otherwise equal
  sentences are usually two true statements;
- **polarity**: the same statement, one side negated ("we use Redis for caching" / "we do not
  use Redis for caching"; "avoid X" counts as "do not use X");
- **choice**: "use X instead of Y" (or "prefer X over Y", "switched from Y to X", "replaced Y
  with X") against a statement that uses Y and not X.

False contradictions lower the trust of honest memories, so every rule needs the two
sentences to be nearly the same apart from the conflicting part: paraphrases, additions
("port 8080 and 9090"), qualifications and unrelated numbers do not conflict.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from memory.record import Memory
from memory.scoring import trust as trust_mod

# Memories that assert how things are or should be. Bugs, episodes, commits and notes record
# events: two of them with different numbers ("3 tests failed" / "0 tests failed") are
# usually both true at different times.
STATEMENT_KINDS = frozenset({"fact", "decision", "convention", "preference", "doc"})

# Share of content words two sentences must have in common (Jaccard) to count as the same
# statement, and the least number of shared content words (one shared word is no context).
SAME_STATEMENT = 0.8
MIN_SHARED = 2
# Trust means closer than this count as equal.
TRUST_TIE = 1e-6


def _wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


_STOP = _wordset("""
a an the this that these those there here it its it's we our ours us you your i my me
they their them he she his her is are was were be been being am do does did done doing
have has had having will would shall should must can could may might of on in at to for
with by from into onto as via per about and or but so then than also too very just now
currently still always usually all any each every some such what which who whom whose
when where how why if else while up out off again further once both own same other
longer anymore
""")

# Words that negate their clause. "avoid X" is read as "do not use X", and "disable" as
# "do not enable", so they pair with the positive form.
_NEGATORS = _wordset("""
not no never nor neither without cannot cant dont doesnt didnt isnt arent wasnt werent
wont wouldnt shouldnt mustnt couldnt hasnt havent hadnt stop stopped forbid forbidden
prohibited disallowed banned
""")
_NEGATING_VERBS = {"avoid": "use", "avoided": "use", "avoids": "use", "avoiding": "use",
                   "disable": "enable", "disabled": "enable", "disables": "enable",
                   "disabling": "enable"}

# Texts are cut to this many characters and sentences before comparing: statements are
# short, and this bounds the work on a pasted document.
MAX_CHARS = 4_000
MAX_SENTENCES = 40

# Tokens: a back-quoted span, or a run of characters without spaces and clause punctuation.
# Every pattern here is linear in the text (no nested or unbounded-overlapping repeats).
_CHUNK = re.compile(r"`[^`\n]{1,80}`|[^\s,;()\[\]{}\"<>!?`]+")
_LETTERS = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")
_FILE = re.compile(r"[\w-]+\.(?:py|js|ts|tsx|jsx|rs|go|java|rb|toml|ya?ml|json|ini|cfg|conf|env"
                   r"|md|txt|sh|sql|lock|html|css|c|h|cpp|hpp)")
_CAMEL = re.compile(r"[a-z][A-Z]")
_SENTENCE = re.compile(r"(?<=[.!?;])\s+|\n+")

# "X instead of Y" and its relatives. The lookbehind makes X start at a token boundary and
# the bounds keep each attempt short.
_X = r"(?<![\w.+#-])(?P<x>[\w.+#-]{1,64})"
_Y = r"(?P<y>[^,;.()]{1,120})"
_CHOICE = [
    re.compile(_X + r"\s+(?:instead\s+of|rather\s+than)\s+" + _Y, re.I),
    re.compile(r"\bprefer(?:s|red)?\s+" + _X + r"\s+(?:over|to)\s+" + _Y, re.I),
    re.compile(r"\b(?:switch|switched|move|moved|migrate|migrated)\s+from\s+"
               r"(?P<y>[^,;.()]{1,120}?)\s+to\s+" + _X, re.I),
    re.compile(r"\breplaced?\s+(?P<y>[^,;.()]{1,120}?)\s+with\s+" + _X, re.I),
]
# Words that carry no choice of their own (the verb around a choice, the choice words).
_LIGHT = frozenset({"us", "instead", "rather", "prefer", "over", "switch", "mov", "migrat",
                    "replac"})


def _stem(word: str) -> str:
    """Crude suffix folding, only so that "uses", "used" and "using" compare equal."""
    w = word.lower().replace("'", "")
    for suffix in ("ing", "ed"):
        if w.endswith(suffix) and len(w) - len(suffix) >= 2:
            w = w[: -len(suffix)]
            if len(w) >= 2 and w[-1] == w[-2] and w[-1] not in "aeiousl":
                w = w[:-1]  # running -> run, stopped -> stop
            break
    else:
        if w.endswith("ies") and len(w) > 4:
            w = w[:-3] + "y"
        elif w.endswith("s") and not w.endswith("ss") and len(w) > 3:
            w = w[:-1]
    if w.endswith("e") and len(w) > 2:
        w = w[:-1]  # use -> us, like using -> us
    return w


def _tokens(text: str) -> list[tuple[bool, str]]:
    """(is_value, token) in order. Values: back-quoted code, URLs, paths, dotfiles, file
    names, anything with a digit (numbers, versions, ports, times, host:port) and code
    identifiers (snake_case, camelCase, a.b.c), lowercased. Everything else is split into
    words, kept with their apostrophes."""
    out: list[tuple[bool, str]] = []
    for m in _CHUNK.finditer(text):
        chunk = m.group().strip("'").rstrip(".:")
        if not chunk:
            continue
        if chunk.startswith("`"):
            value = chunk.strip("`").strip().lower()
            if value:
                out.append((True, value))
            continue
        is_value = ("/" in chunk or "_" in chunk or any(c.isdigit() for c in chunk)
                    or (chunk.startswith(".") and len(chunk) > 1)
                    or _FILE.fullmatch(chunk) is not None or chunk.count(".") >= 2
                    or _CAMEL.search(chunk) is not None)
        if is_value:
            value = chunk.lower()
            # "v2.1" and "2.1" are the same version.
            if len(value) > 1 and value[0] == "v" and value[1].isdigit():
                value = value[1:]
            out.append((True, value))
        else:
            out.extend((False, w.group()) for w in _LETTERS.finditer(chunk))
    return out


@dataclass(frozen=True)
class Statement:
    """One sentence reduced to what the rules compare."""

    words: frozenset[str]  # stemmed content words (no stop words, negators or values)
    values: frozenset[tuple[str, str]]  # (key, value): key is the nearest content word before
    negated: bool  # an odd number of negations
    # "X instead of Y": (chosen, rejected words, "X instead of Y" as written)
    choice: tuple[str, frozenset[str], str] | None = None
    value_set: frozenset[str] = field(default=frozenset())  # every value, keyed or not


def _phrase(text: str) -> frozenset[str]:
    """Content words of the noun phrase that starts `text` ("the raw SQL for reports" ->
    raw, sql): leading stop words are skipped, the phrase ends at the next one."""
    out: set[str] = set()
    for is_value, token in _tokens(text):
        if is_value:
            out.add(token)
            continue
        w = token.lower().replace("'", "")
        if w in _STOP or w in _NEGATORS:
            if out:
                break
            continue
        out.add(_stem(w))
    return frozenset(out)


def _phrase_text(text: str) -> str:
    """The words of `_phrase(text)` as written, for messages."""
    kept: list[str] = []
    for word in text.split():
        if word.lower().strip(".,'") in _STOP:
            if kept:
                break
            continue
        kept.append(word)
    return " ".join(kept)


def parse_sentence(sentence: str) -> Statement:
    sentence = sentence.replace("\u2019", "'")  # don’t -> don't
    words: set[str] = set()
    values: set[tuple[str, str]] = set()
    all_values: set[str] = set()
    negations = 0
    key: str | None = None
    for is_value, raw in _tokens(sentence):
        if is_value:
            all_values.add(raw)
            if key is not None:
                values.add((key, raw))
            continue
        w = raw.lower().replace("'", "")
        if w.endswith("nt") and w[:-2] + "n't" == raw.lower():
            negations += 1
            continue
        if w in _NEGATORS:
            negations += 1
            continue
        if w in _NEGATING_VERBS:
            negations += 1
            w = _NEGATING_VERBS[w]
        if w in _STOP:
            continue
        stem = _stem(w)
        words.add(stem)
        key = stem
    choice = None
    for pattern in _CHOICE:
        cm = pattern.search(sentence)
        if cm:
            chosen = _phrase(cm.group("x"))
            rejected = _phrase(cm.group("y")) - _LIGHT
            if len(chosen) == 1 and rejected and not chosen & rejected:
                label = f"{cm.group('x')} instead of {_phrase_text(cm.group('y'))}"
                choice = (next(iter(chosen)), rejected, label)
            break
    return Statement(frozenset(words), frozenset(values), negations % 2 == 1, choice,
                     frozenset(all_values))


def sentences(text: str) -> list[Statement]:
    """The first MAX_SENTENCES distinct sentences of `text` that have content words."""
    out: dict[Statement, None] = {}
    for part in _SENTENCE.split(text[:MAX_CHARS]):
        statement = parse_sentence(part.strip()) if part.strip() else None
        if statement is not None and statement.words:
            out[statement] = None
            if len(out) >= MAX_SENTENCES:
                break
    return list(out)


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 0.0


def _same_statement(a: Statement, b: Statement) -> bool:
    """Nearly the same words, counting the values both sides share ("we use MySQL")."""
    common = a.value_set & b.value_set
    left, right = a.words | common, b.words | common
    return len(left & right) >= MIN_SHARED and _jaccard(left, right) >= SAME_STATEMENT


def _is_literal(value: str) -> bool:
    """A number, version, port, path, file name or URL: a value a statement asserts. Bare
    identifiers are left out: "call parse_config from main.py" and "call load_env from
    main.py" are usually two true statements about two functions."""
    return bool(re.search(r"\d|/", value) or value.startswith(".") or _FILE.fullmatch(value))


def _value_conflict(a: Statement, b: Statement) -> str | None:
    if a.negated != b.negated or not _same_statement(a, b):
        return None
    # Exactly one value replaced by another, everything else equal. An addition ("8080 and
    # 9090") keeps the old value; several changed values mean another subject altogether
    # ("call A before B in x.py" / "call C before D in y.py").
    mine, theirs = a.value_set - b.value_set, b.value_set - a.value_set
    if len(mine) != 1 or len(theirs) != 1:
        return None
    old, new = next(iter(mine)), next(iter(theirs))
    if not (_is_literal(old) and _is_literal(new)):
        return None
    old_keys = {k for k, v in a.values if v == old}
    new_keys = {k for k, v in b.values if v == new}
    if not old_keys & new_keys:
        return None
    return f"{old} vs {new}"


def _polarity_conflict(a: Statement, b: Statement) -> str | None:
    if a.negated == b.negated or a.value_set != b.value_set or not _same_statement(a, b):
        return None
    return "negation"


def _choice_conflict(a: Statement, b: Statement) -> str | None:
    """`a` chooses X over Y; `b` states it uses Y (and not X)."""
    if a.choice is None:
        return None
    chosen, rejected, label = a.choice
    if b.choice is not None:  # "X instead of Y" vs "Y instead of X"
        other_chosen, other_rejected, other_label = b.choice
        if other_chosen in rejected and chosen in other_rejected:
            return f"{label} vs {other_label}"
        return None
    # Values count as words here: "MySQL" and "GitHub" are tokenised as identifiers.
    mine, theirs = a.words | a.value_set, b.words | b.value_set
    if b.negated or not rejected <= theirs or chosen in theirs:
        return None
    context = mine - rejected - {chosen} - _LIGHT
    rest = theirs - rejected - _LIGHT
    if context and not context & rest:
        return None
    return label


def conflict(a: str, b: str) -> str | None:
    """A short reason if texts `a` and `b` contradict each other, else None."""
    left, right = sentences(a), sentences(b)
    for s in left:
        for t in right:
            reason = (_value_conflict(s, t) or _polarity_conflict(s, t)
                      or _choice_conflict(s, t) or _choice_conflict(t, s))
            if reason:
                return reason
    return None


def loser(new: Memory, old: Memory) -> Literal["new", "old"]:
    """Which of two contradicting memories receives the CONTRADICTED event.

    The one with lower trust (Beta mean: source prior plus evidence). On a tie the older one
    loses (the newer statement is the likelier update), unless the newer came from a
    less-trusted source: an import does not overrule the user just by being recent.
    """
    new_trust = trust_mod.mean(new.trust_alpha, new.trust_beta)
    old_trust = trust_mod.mean(old.trust_alpha, old.trust_beta)
    if abs(new_trust - old_trust) > TRUST_TIE:
        return "new" if new_trust < old_trust else "old"
    new_prior = trust_mod.mean(*trust_mod.prior(new.source))
    old_prior = trust_mod.mean(*trust_mod.prior(old.source))
    return "new" if new_prior < old_prior - TRUST_TIE else "old"


@dataclass(frozen=True)
class Contradiction:
    id: str  # the existing memory the new one contradicts
    lowered: str  # whose trust falls: the new memory's id or `id`
    reason: str  # e.g. "8080 vs 9090" (existing value first) or "negation"


def check(memory: Memory, neighbours: Iterable[Memory]) -> list[Contradiction]:
    """Contradictions between a new `memory` and existing `neighbours` (the caller picks close
    ones), each with the side that loses. Only statement kinds are compared, and a new memory
    that is quarantined (it reads like an injection) never discredits another one."""
    if memory.kind not in STATEMENT_KINDS:
        return []
    found = []
    for other in neighbours:
        if other.kind not in STATEMENT_KINDS or other.id == memory.id:
            continue
        reason = conflict(other.text, memory.text)  # reads "existing vs new"
        if reason is None:
            continue
        lowered = memory.id if loser(memory, other) == "new" else other.id
        if lowered == other.id and memory.status == "quarantined":
            continue
        found.append(Contradiction(other.id, lowered, reason))
    return found
