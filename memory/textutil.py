"""Text normalisation, dedup hashing and code-aware search terms.

memctl's full-text index is Tantivy with its default tokenizer: split on every
character that is not alphanumeric, lower-case, drop tokens of 40 bytes or more. That
finds "parse" in ``parse_config`` but never matches ``parseConfig`` (one token,
"parseconfig") against ``parse_config`` or ``src/config/parse.py``. So each memory
also gets a field holding `code_terms(text)`, and queries are expanded with
`query_terms` the same way; then all three spellings share terms.

Splitting rule (`split_identifier`), shared by both sides:
* separators: anything not alphanumeric (``_ - . / \\ :`` ...);
* case changes: ``parseConfig`` -> parse|config, ``HTTPServer`` -> http|server;
* digits stay with the letters before them (``sha256``, ``utf8``, ``v2Api`` ->
  v2|api): a lone "2" or "256" would match far too much.

Expansion rule (`code_terms`): for each identifier-like token (one that splits into
two or more parts) emit its parts, plus, for every *name* in it that has several
parts, the name joined (``parse_config`` -> "parseconfig"). A name is a piece between
dots and slashes: dots and slashes separate names (module.Class, dir/file.ext), while
underscores, hyphens and case changes separate words *inside* a name. So
``src/config/parse.py`` gives "src config parse py" and ``parse_config.py`` gives
"parse config parseconfig py": the file stem meets the identifier, and no glued
whole-path term ("srcconfigparsepy") is invented that nobody would type.
"""

from __future__ import annotations

import functools
import hashlib
import re
import unicodedata

MAX_QUERY_TERMS = 64
# Tantivy's default analyzer drops tokens of this many UTF-8 bytes or more
# (RemoveLongFilter::limit(40)); such terms could never match, so they are not emitted.
MAX_TERM_BYTES = 40

_NEWLINES = re.compile(r"\r\n|[\r\x85\u2028\u2029]")
# A raw token: alphanumerics joined by the characters that glue code names together.
_RAW_TOKEN = re.compile(r"[^\W_]+(?:[_\-./\\:]+[^\W_]+)*|_+[^\W_]\w*")
_NAME_SEPARATORS = re.compile(r"[./\\:]+")
_ALNUM_RUN = re.compile(r"[^\W_]+")


def normalize_text(text: str) -> str:
    """NFC, one newline style, no trailing spaces on lines, no blank ends. Case is kept."""
    text = unicodedata.normalize("NFC", text)
    text = _NEWLINES.sub("\n", text)
    # Per-line rstrip rather than a regex: "[ \t]+$" is quadratic on long space runs.
    return "\n".join(line.rstrip() for line in text.split("\n")).strip()


def content_hash(text: str) -> str:
    """sha256 of a dedup key that ignores case and how whitespace is laid out."""
    key = " ".join(normalize_text(text).casefold().split())
    # casefold() can leave decomposed sequences ("İ" -> "i̇"): normalise again.
    key = unicodedata.normalize("NFC", key)
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def split_identifier(token: str) -> list[str]:
    """Lower-cased words of a code name or path.

    "parseConfig" -> ["parse", "config"]; "HTTPServerError" -> ["http", "server", "error"];
    "src/config/parse.py" -> ["src", "config", "parse", "py"]; "v2Api" -> ["v2", "api"].
    """
    words: list[str] = []
    for chunk in _alnum_runs(token):
        words.extend(_split_case(chunk))
    # Lower-casing can add combining marks ("İ" -> "i" + U+0307); drop them so every
    # term stays alphanumeric and the word stays whole.
    lowered = ("".join(c for c in word.lower() if c.isalnum()) for word in words)
    return [word for word in lowered if word]


def code_terms(text: str) -> str:
    """Space-separated extra terms for the code-aware index field (see module doc)."""
    terms: list[str] = []
    for token in _RAW_TOKEN.findall(unicodedata.normalize("NFC", text)):
        expanded = _expand(token)
        if expanded is not None:
            terms.extend(expanded)
    return " ".join(terms)


def query_terms(query: str) -> list[str]:
    """Plain search terms for `query`: every word, plus code-name expansions.

    Each term is lower-case and made only of alphanumeric characters (``str.isalnum``,
    so letters of any script stay, as Tantivy keeps them), so a query built from them
    cannot contain query syntax (quotes, colons, parens, ``AND``, ``*``, ``~``, ``^``,
    brackets, NUL). Duplicates are dropped, first occurrence first, at most
    `MAX_QUERY_TERMS`. Empty for a query without any alphanumeric character.
    """
    seen: dict[str, None] = {}
    for token in _RAW_TOKEN.findall(unicodedata.normalize("NFC", query)):
        expanded = _expand(token)
        for term in expanded if expanded is not None else split_identifier(token):
            if _fits(term):
                seen.setdefault(term, None)
                if len(seen) >= MAX_QUERY_TERMS:
                    return list(seen)
    return list(seen)


# Names recur across a project's memories: a rebuild of the index at 100,000 memories spent
# 90% of its time splitting the same identifiers again. Long tokens (a pasted hash or blob)
# are split each time, so the cache stays a few MB.
CACHED_NAMES = 1 << 14
CACHED_NAME_CHARS = 100


def _expand(token: str) -> tuple[str, ...] | None:
    """Parts and joined names of an identifier-like token; None for a plain word."""
    if token.isalnum() and (token[1:].islower() or token.isupper()):
        return None  # fast path: "word", "Word", "WORD", "sha256" are one part
    if len(token) > CACHED_NAME_CHARS:
        return _expand_name(token)
    return _expand_cached(token)


def _expand_name(token: str) -> tuple[str, ...] | None:
    parts = split_identifier(token)
    if len(parts) < 2:
        return None
    terms = list(parts)
    for name in _NAME_SEPARATORS.split(token):
        name_parts = split_identifier(name)
        if len(name_parts) >= 2:
            terms.append("".join(name_parts))
    return tuple(term for term in terms if _fits(term))


_expand_cached = functools.lru_cache(maxsize=CACHED_NAMES)(_expand_name)


def _fits(term: str) -> bool:
    return bool(term) and len(term.encode("utf-8")) < MAX_TERM_BYTES


def _alnum_runs(text: str) -> list[str]:
    # re's \w is str.isalnum() plus "_" (both use the same Unicode tables).
    return _ALNUM_RUN.findall(text)


def _split_case(chunk: str) -> list[str]:
    """Split an alphanumeric run at case changes; digits stick to what precedes them."""
    rest = chunk[1:]
    if not rest or rest.islower() or rest.isdecimal():
        return [chunk]  # no capital after the first character: no boundary (most words)
    words: list[str] = []
    start = 0
    for i in range(1, len(chunk)):
        prev, char = chunk[i - 1], chunk[i]
        if char.isupper() and (prev.islower() or prev.isdigit()):
            boundary = True  # parseConfig, v2Api
        elif char.isupper() and prev.isupper():
            # HTTPServer: the last capital before a lower-case letter starts a word.
            boundary = False
        elif char.islower() and prev.isupper() and i - 1 > start:
            words.append(chunk[start : i - 1])
            start = i - 1
            boundary = False
        else:
            boundary = False
        if boundary:
            words.append(chunk[start:i])
            start = i
    words.append(chunk[start:])
    return [word for word in words if word]
