"""Normalisation, dedup hashing and code-aware search terms."""

from __future__ import annotations

import hashlib
import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memory.textutil import (
    MAX_QUERY_TERMS,
    MAX_TERM_BYTES,
    _alnum_runs,
    code_terms,
    content_hash,
    normalize_text,
    query_terms,
    split_identifier,
)
from tests.scaling import assert_linear

# --- normalize_text ------------------------------------------------------------------


def test_normalize_unifies_newlines_and_trims() -> None:
    text = "  first line  \r\nsecond\t \rthird\u2028fourth\u2029\x85end \n\n"
    assert normalize_text(text) == "first line\nsecond\nthird\nfourth\n\nend"


def test_normalize_keeps_case_and_inner_blank_lines() -> None:
    assert normalize_text("Keep CASE\n\n  indented") == "Keep CASE\n\n  indented"


def test_normalize_composes_unicode() -> None:
    decomposed = "cafe\u0301"
    assert normalize_text(decomposed) == "caf\u00e9"


def test_normalize_long_space_runs_are_linear() -> None:
    text = "a" + " " * 500_000 + "b" + " " * 500_000
    assert normalize_text(text) == "a" + " " * 500_000 + "b"
    assert_linear(normalize_text, text)


# --- content_hash --------------------------------------------------------------------


def test_content_hash_is_sha256_hex() -> None:
    digest = content_hash("hello world")
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert digest == hashlib.sha256(b"hello world").hexdigest()


@pytest.mark.parametrize(
    "variant",
    [
        "Use LanceDB for vectors.",
        "use lancedb for vectors.",
        "  Use   LanceDB\tfor\nvectors.  ",
        "USE LANCEDB\r\nFOR VECTORS.",
        "Use\u00a0LanceDB for\u2028vectors.",
    ],
)
def test_content_hash_ignores_case_and_whitespace(variant: str) -> None:
    assert content_hash(variant) == content_hash("Use LanceDB for vectors.")


def test_content_hash_sees_real_differences() -> None:
    assert content_hash("use lancedb") != content_hash("use tantivy")
    assert content_hash("parse_config") != content_hash("parse config")
    assert content_hash("Straße") == content_hash("STRASSE")  # casefold, not lower()
    assert content_hash("cafe\u0301") == content_hash("CAF\u00c9")


# --- split_identifier ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "parts"),
    [
        ("parseConfig", ["parse", "config"]),
        ("ParseConfig", ["parse", "config"]),
        ("parse_config", ["parse", "config"]),
        ("PARSE_CONFIG", ["parse", "config"]),
        ("parse-config", ["parse", "config"]),
        ("HTTPServerError", ["http", "server", "error"]),
        ("IOError", ["io", "error"]),
        ("getX", ["get", "x"]),
        ("src/config/parse.py", ["src", "config", "parse", "py"]),
        ("C:\\Users\\dev\\app.py", ["c", "users", "dev", "app", "py"]),
        ("os.path.join", ["os", "path", "join"]),
        ("v2Api", ["v2", "api"]),
        ("HTTP2Server", ["http2", "server"]),
        ("sha256", ["sha256"]),
        ("x86_64", ["x86", "64"]),
        ("__init__", ["init"]),
        ("ABC", ["abc"]),
        ("", []),
        ("___", []),
        ("İstanbulCity", ["istanbul", "city"]),
        ("naïveBayes", ["naïve", "bayes"]),
    ],
)
def test_split_identifier(token: str, parts: list[str]) -> None:
    assert split_identifier(token) == parts


# --- code_terms / query_terms --------------------------------------------------------


def test_code_terms_of_identifiers() -> None:
    assert code_terms("parse_config") == "parse config parseconfig"
    assert code_terms("parseConfig") == "parse config parseconfig"
    assert code_terms("HTTPServerError") == "http server error httpservererror"


def test_code_terms_of_paths_join_within_names_only() -> None:
    assert code_terms("src/config/parse.py") == "src config parse py"
    # The stem "parse_config" meets the identifier; no glued whole-path term.
    assert code_terms("src/parse_config.py") == "src parse config py parseconfig"


def test_code_terms_skip_plain_words() -> None:
    assert code_terms("We decided to keep the config simple.") == ""
    assert code_terms("see parseConfig.") == "parse config parseconfig"


def test_code_terms_in_prose() -> None:
    terms = code_terms("The bug was in loadConfig (src/app_main.py), not in os.path.join.").split()
    assert terms == [
        "load", "config", "loadconfig",
        "src", "app", "main", "py", "appmain",
        "os", "path", "join",
    ]  # fmt: skip


_FORMS = ["parseConfig", "parse_config", "src/config/parse.py"]


@pytest.mark.parametrize(("doc", "query"), list(itertools.product(_FORMS, repeat=2)))
def test_every_spelling_finds_every_other(doc: str, query: str) -> None:
    indexed = set(code_terms(f"Notes about {doc} here.").split())
    assert indexed & set(query_terms(f"where is {query}?"))


def test_joined_form_is_searchable() -> None:
    assert "parseconfig" in code_terms("parse_config").split()
    assert "parseconfig" in query_terms("parseconfig")
    assert "parseconfig" in query_terms("ParseConfig")


def test_query_terms_keep_plain_words_and_expand_code() -> None:
    assert query_terms("Why did parse_config fail?") == [
        "why", "did", "parse", "config", "parseconfig", "fail",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "query",
    [
        '"unclosed quote',
        "field:value AND (a OR b) NOT c",
        "wild* fuzzy~2 boost^3 [a TO b] {x TO y}",
        "+must -not !bang && || \\ / : ; ' ` @ # $ % & = < > ?",
        "\x00nul\x00byte",
        "",
        "   ",
        "*** ::: ---",
        "日本語のクエリ naïve Ünïcödé",
        "İstanbul ǅ ﬁle",
    ],
)
def test_query_terms_are_syntax_free(query: str) -> None:
    terms = query_terms(query)
    for term in terms:
        assert term.isalnum()
        assert term == term.lower()
    syntax = set("\"'():*~^[]{}+-!&|\\/;`@#$%=<>? \x00")
    assert not any(set(term) & syntax for term in terms)


def test_query_terms_examples() -> None:
    assert query_terms("field:value AND (a OR b)") == ["field", "value", "and", "a", "or", "b"]
    assert query_terms("*** ::: ---") == []
    assert query_terms("日本語 naïve") == ["日本語", "naïve"]


def test_query_terms_dedupe_and_cap() -> None:
    assert query_terms("config Config CONFIG parse_config") == [
        "config", "parse", "parseconfig",
    ]  # fmt: skip
    many = " ".join(f"word{i}" for i in range(500))
    terms = query_terms(many)
    assert len(terms) == MAX_QUERY_TERMS
    assert terms[:3] == ["word0", "word1", "word2"]


def test_terms_too_long_for_tantivy_are_dropped() -> None:
    long_word = "a" * MAX_TERM_BYTES
    assert query_terms(long_word) == []
    assert query_terms("a" * (MAX_TERM_BYTES - 1)) == ["a" * (MAX_TERM_BYTES - 1)]
    # 20 two-byte letters = 40 bytes: dropped, as Tantivy counts bytes, not characters.
    assert query_terms("é" * 20) == []
    long_name = "very_long_identifier_name_that_joins_to_many_bytes"
    terms = code_terms(long_name).split()
    assert "very" in terms
    assert all(len(t.encode()) < MAX_TERM_BYTES for t in terms)


# --- properties ----------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_query_terms_never_raise_and_are_clean(query: str) -> None:
    terms = query_terms(query)
    assert len(terms) <= MAX_QUERY_TERMS
    assert len(terms) == len(set(terms))
    for term in terms:
        assert term
        assert term.isalnum()
        assert term == term.lower()
        assert len(term.encode("utf-8")) < MAX_TERM_BYTES


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=300))
def test_ascii_query_terms_are_plain_ascii(query: str) -> None:
    for term in query_terms(query):
        assert re.fullmatch(r"[a-z0-9]+", term)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=300))
def test_code_terms_never_raise_and_are_clean(text: str) -> None:
    for term in code_terms(text).split(" "):
        if term:
            assert term.isalnum()
            assert term == term.lower()


_WORDS = st.lists(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=2, max_size=8), min_size=2, max_size=4
)


@settings(max_examples=150, deadline=None)
@given(_WORDS)
def test_identifier_spellings_always_meet(words: list[str]) -> None:
    snake = "_".join(words)
    camel = words[0] + "".join(w.capitalize() for w in words[1:])
    path = "/".join(words[:-1]) + "/" + words[-1] + ".py"
    for doc, query in itertools.product([snake, camel, path], repeat=2):
        assert set(code_terms(doc).split()) & set(query_terms(query)), (doc, query)
    # snake and camel spellings share the joined form too.
    assert "".join(words) in code_terms(snake).split()
    assert "".join(words) in query_terms(camel)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200), st.text(alphabet=" \t\n\r\u00a0\u2028", max_size=5))
def test_content_hash_ignores_whitespace_layout_and_case(text: str, pad: str) -> None:
    spaced = pad + re.sub(r"\s+", lambda m: m.group() + pad + " ", text) + pad
    assert content_hash(spaced) == content_hash(text)
    assert content_hash(text.upper()) == content_hash(text.lower()) or not text.isascii()


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200))
def test_normalize_is_idempotent(text: str) -> None:
    once = normalize_text(text)
    assert normalize_text(once) == once
    assert "\r" not in once
    assert once == once.strip()


def test_alphanumeric_runs_follow_str_isalnum_on_every_code_point() -> None:
    # The splitter finds runs with a regex; this is what makes that the same as isalnum.
    chars = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    text = "".join(chars)
    expected = "".join(c if c.isalnum() else " " for c in chars).split()
    assert _alnum_runs(text) == expected


def test_code_names_are_split_once_and_long_tokens_never_cached() -> None:
    from memory import textutil

    name = "parseConfigCacheV2"
    first = textutil._expand(name)
    assert first == textutil._expand_name(name) == textutil._expand(name)
    assert textutil._expand_cached.cache_info().hits >= 1
    size = textutil._expand_cached.cache_info().currsize
    blob = "chunk_" * 50  # a pasted blob is split every time, not kept
    assert len(blob) > textutil.CACHED_NAME_CHARS
    assert textutil._expand(blob) == textutil._expand_name(blob)
    assert textutil._expand_cached.cache_info().currsize == size
