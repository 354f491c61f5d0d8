"""Entity extraction: code names, paths and packages in, plain English out."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memory.entities import extract_entities, extract_files
from tests.scaling import assert_linear

# --- identifiers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("we call parseConfig first", ["parseConfig"]),
        ("the RedactionResult type", ["RedactionResult"]),
        ("HTTPServerError is raised", ["HTTPServerError"]),
        ("rename parse_config", ["parse_config"]),
        ("MAX_TOKENS is 512", ["MAX_TOKENS"]),
        ("__init__ and _private", ["__init__", "_private"]),
        ("sha256 over utf8 bytes", ["sha256", "utf8"]),
        ("the v2Api client", ["v2Api"]),
        ("os.path.join builds it", ["os.path.join"]),
        ("module.Class.method is patched", ["module.Class.method"]),
        ("serde::Deserialize and std::collections::HashMap", [
            "serde::Deserialize", "std::collections::HashMap",
        ]),
        ("call foo() and then bar(x, y)", ["foo", "bar"]),
        ("os.path.join() is used", ["os.path.join"]),
        ("run `memctl` and `pytest`", ["memctl", "pytest"]),
        ("the `recall()` tool", ["recall"]),
    ],
)  # fmt: skip
def test_identifiers(text: str, expected: list[str]) -> None:
    assert extract_entities(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "The decision was that we keep it simple.",
        "We",
        "Decided to use the Python version we already have.",
        "APIs, URLs and IDs are plural acronyms; HTTP and JSON are words here.",
        "It is local-first and read-only, a well-known trade-off.",
        "Look at the file(s) and the item(s) again.",
        "e.g. this, i.e. that, etc. and so on; Ph.D. work in the U.S.",
        "Visit https://github.com/acme/parse_config.py or mail bob.smith@example.com",
        "commit 3f786850e387550fdab836ed7e6dc881de23001b and deadbeef1234",
        "id 123e4567-e89b-12d3-a456-426614174000",
        "version 1.2.3, 2024/01/31, 1/2 and 10:30",
        "and/or, client/server, input/output, w/ the fix",
        "_important_ and **bold** words",
        "",
    ],
)
def test_plain_text_has_no_entities(text: str) -> None:
    assert extract_entities(text) == []


# --- paths ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("edit src/config/parse.py now", ["src/config/parse.py"]),
        ("run ./scripts/run.sh", ["./scripts/run.sh"]),
        ("see ../shared/notes.md", ["../shared/notes.md"]),
        ("read README.md.", ["README.md"]),
        ("in ~/.config/memctl/config.toml", ["~/.config/memctl/config.toml"]),
        ("/etc/hosts and /usr/local/bin", ["/etc/hosts", "/usr/local/bin"]),
        ("failed at memory/store.py:42:7", ["memory/store.py"]),
        ("the .env and .gitignore files", [".env", ".gitignore"]),
        ("Makefile and Dockerfile", ["Makefile", "Dockerfile"]),
        ("the memory/ and tests/ folders", ["memory/", "tests/"]),
        ("mcp_server/tools is new", ["mcp_server/tools"]),
        ("C:\\Users\\dev\\app.py crashed", ["C:\\Users\\dev\\app.py"]),
        ("node_modules/@types/node/index.d.ts", ["node_modules/@types/node/index.d.ts"]),
        ("pyproject.toml, Cargo.lock and index.test.ts", [
            "pyproject.toml", "Cargo.lock", "index.test.ts",
        ]),
    ],
)  # fmt: skip
def test_paths(text: str, expected: list[str]) -> None:
    assert extract_files(text) == expected
    assert extract_entities(text) == expected


def test_attribute_is_not_a_file() -> None:
    text = "response.json() and self.lock and math.log but config.json"
    assert extract_files(text) == ["config.json"]
    assert extract_entities(text) == ["response.json", "self.lock", "math.log", "config.json"]


# --- packages ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("pip install requests numpy==1.26 -U", ["requests", "numpy"]),
        ('pip install "fastapi[all]>=0.100" -e . and restart', ["fastapi"]),
        ("uv pip install -r requirements.txt rich", ["requirements.txt", "rich"]),
        ("npm i @scope/pkg lodash@4.17.21 --save-dev", ["@scope/pkg", "lodash"]),
        ("yarn add react@^18.2.0 react-dom", ["react", "react-dom"]),
        ("cargo add serde", ["serde"]),
        ("go get github.com/spf13/cobra@latest", ["github.com/spf13/cobra"]),
        ("brew install ripgrep", ["ripgrep"]),
        ("import numpy", ["numpy"]),
        ("import numpy as np, pandas", ["numpy", "pandas"]),
        (">>> import json", ["json"]),
        ("from a.b import c", ["a.b", "c"]),
        ("from memory.store import (MemoryStore, open_store as o)", [
            "memory.store", "MemoryStore", "open_store",
        ]),
        ("from .record import Memory", ["record", "Memory"]),
        ('const x = require("express")', ["require", "express"]),
        ("import React from 'react'", ["React", "react"]),
        ("requests==2.31.0\nrich>=13\n", ["requests", "rich"]),
        ('dependencies = ["lancedb>=0.40,<0.41", "tantivy>=0.27"]', ["lancedb", "tantivy"]),
        ("pinned lancedb==0.40.2 last week", ["lancedb"]),
    ],
)  # fmt: skip
def test_packages(text: str, expected: list[str]) -> None:
    assert extract_entities(text) == expected


def test_code_comparison_is_not_a_requirement() -> None:
    assert extract_entities("if count==0: return") == []


def test_prose_import_is_not_a_package() -> None:
    assert extract_entities("we import the data from disk") == []


# --- order, dedupe, limit ------------------------------------------------------------


def test_first_occurrence_order_and_dedupe() -> None:
    text = "parseConfig calls load_file; parseConfig again, then src/a.py and load_file."
    assert extract_entities(text) == ["parseConfig", "load_file", "src/a.py"]


def test_limit() -> None:
    text = " ".join(f"name_{i}" for i in range(100))
    assert extract_entities(text) == [f"name_{i}" for i in range(32)]
    assert extract_entities(text, limit=5) == [f"name_{i}" for i in range(5)]
    assert extract_entities(text, limit=0) == []


def test_files_are_not_limited() -> None:
    text = " ".join(f"src/mod_{i}.py" for i in range(50))
    assert len(extract_files(text)) == 50


def test_mixed_note() -> None:
    note = (
        "Decision: keep LanceDB. The bug was in memory/store/lance.py where "
        "open_table() ignored MAX_ROWS; fixed by calling os.path.exists first. "
        "Ran `pip install lancedb==0.40.2` and updated pyproject.toml."
    )
    assert extract_entities(note) == [
        "LanceDB", "memory/store/lance.py", "open_table", "MAX_ROWS", "os.path.exists",
        "lancedb", "pyproject.toml",
    ]  # fmt: skip
    assert extract_files(note) == ["memory/store/lance.py", "pyproject.toml"]


def test_large_input_scales_linearly() -> None:
    chunk = "parseConfig in src/a.py, pip install foo, http://x.io/a@b.c " * 2_000
    adversarial = "a" * 200_000 + "@" + "b." * 100_000 + "://" + "-" * 100_000
    for text in (chunk, adversarial, "x." * 200_000, "/" * 200_000 + "a"):
        assert_linear(lambda t: (extract_entities(t), extract_files(t)), text)


# --- properties ----------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300), st.integers(min_value=0, max_value=40))
def test_entities_are_distinct_substrings(text: str, limit: int) -> None:
    entities = extract_entities(text, limit=limit)
    assert len(entities) <= limit
    assert len(entities) == len(set(entities))
    for entity in entities:
        assert entity in text
        assert entity.strip() == entity and entity
    files = extract_files(text)
    assert set(files) <= set(extract_entities(text, limit=10_000))


_ENGLISH = [
    "The", "decision", "we", "made", "was", "to", "keep", "it", "simple", "and", "fast",
    "Because", "users", "asked", "for", "less", "noise", "in", "their", "notes", "Today",
    "a", "small", "change", "fixed", "the", "bug", "They", "agreed",
]  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(_ENGLISH), st.sampled_from([" ", ", ", ". ", "; ", "\n"])),
        max_size=30,
    )
)
def test_english_prose_yields_nothing(words: list[tuple[str, str]]) -> None:
    text = "".join(word + sep for word, sep in words)
    assert extract_entities(text) == []
