"""The watcher's pure parts: which files are knowledge, how documents split into sections,
which events matter; plus the small disk helpers on real files and real git repos."""

from __future__ import annotations

import os
import subprocess
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from integrations import docs
from integrations.docs import Chunk, Scope, Skip, split_document
from integrations.watch import Change, _covering, classify


def labels(chunks: list[Chunk]) -> list[str]:
    return [c.where for c in chunks]


# -- splitting -----------------------------------------------------------------------------
def test_preamble_and_nested_headings_make_a_heading_path() -> None:
    text = ("Intro before any heading.\n\n# Guide\n\nGuide text.\n\n## Install\n\nInstall "
            "text.\n\n### Linux\n\napt install it\n\n## Use\n\nUse text.\n\n# Other\n\nMore.\n")
    chunks = split_document(text, "docs/guide.md")
    assert labels(chunks) == ["", "Guide", "Guide > Install", "Guide > Install > Linux",
                              "Guide > Use", "Other"]
    assert [c.body for c in chunks] == ["Intro before any heading.", "Guide text.",
                                        "Install text.", "apt install it", "Use text.", "More."]
    linux = chunks[3]
    assert linux.key == "docs/guide.md#Guide > Install > Linux"
    assert linux.title == "docs/guide.md — Guide > Install > Linux"
    assert linux.text == "docs/guide.md — Guide > Install > Linux\n\napt install it"
    assert chunks[0].title == "docs/guide.md"  # the preamble is titled by its file


def test_hashes_inside_fences_are_not_headings() -> None:
    text = ("# Build\n\n```sh\n# install deps\nmake\n```\n\n~~~~\n# still code\n~~~\n"
            "# still code: the closing fence was too short\n~~~~\n\nafter\n\n"
            "````md\n```\n# nested fence text\n```\n````\n\n## Next\n\nnext text\n")
    chunks = split_document(text, "README.md")
    assert labels(chunks) == ["Build", "Build > Next"]
    assert "# install deps" in chunks[0].body
    assert "# nested fence text" in chunks[0].body
    assert chunks[0].body.endswith("````")


def test_an_unclosed_fence_runs_to_the_end() -> None:
    chunks = split_document("# A\n\n```\n# not a heading\n\n## nor this\n", "x.md")
    assert labels(chunks) == ["A"]


def test_heading_syntax_details() -> None:
    assert docs.heading("## Install ##") == (2, "Install")
    assert docs.heading("### C#") == (3, "C#")
    assert docs.heading("   # Indented up to three") == (1, "Indented up to three")
    assert docs.heading("    # four spaces is code") is None
    assert docs.heading("#hashtag") is None
    assert docs.heading("####### seven") is None
    assert docs.heading("#") == (1, "")


def test_empty_sections_are_skipped_and_repeated_paths_numbered() -> None:
    text = "# Top\n## Example\n\none\n\n## Example\n\ntwo\n\n## Empty\n\n   \n\n## Example\nthree"
    chunks = split_document(text, "a.md")
    assert labels(chunks) == ["Top > Example", "Top > Example (2)", "Top > Example (3)"]
    assert [c.body for c in chunks] == ["one", "two", "three"]
    assert len({c.title for c in chunks}) == 3


def test_front_matter_comments_are_not_headings() -> None:
    text = "---\ntitle: Guide\n# a yaml comment\n---\n\n# Real\n\nbody\n"
    chunks = split_document(text, "docs/g.md")
    assert labels(chunks) == ["", "Real"]
    assert "# a yaml comment" in chunks[0].body


def test_crlf_and_cr_give_the_same_chunks_as_lf() -> None:
    text = "\ufeffintro\n\n# One\n\nbody one\n\n## Two\n\nbody two\n"
    lf = split_document(text, "a.md")
    assert split_document(text.replace("\n", "\r\n"), "a.md") == lf
    assert split_document(text.replace("\n", "\r"), "a.md") == lf
    assert lf[0].body == "intro"  # the byte-order mark is gone


def test_unicode_headings_and_text_survive() -> None:
    text = "# Überblick 概要\n\nDaten fließen → 🚀\n\n## Café\n\nnoir"
    chunks = split_document(text, "docs/über.md")
    assert labels(chunks) == ["Überblick 概要", "Überblick 概要 > Café"]
    assert chunks[0].body == "Daten fließen → 🚀"
    assert chunks[1].title == "docs/über.md — Überblick 概要 > Café"
    decomposed = unicodedata.normalize("NFD", text)
    assert [c.body for c in split_document(decomposed, "x.md")][1] == \
        unicodedata.normalize("NFD", "noir")


def test_long_sections_split_at_paragraphs_with_stable_part_suffixes() -> None:
    paragraphs = [f"Paragraph {i}: " + "word " * 60 for i in range(40)]
    body = "\n\n".join(p.strip() for p in paragraphs)
    text = f"# Long\n\n{body}\n"
    chunks = split_document(text, "docs/long.md", limit=1_000)
    assert len(chunks) > 5
    assert all(len(c.body) <= 1_000 for c in chunks)
    assert labels(chunks)[:3] == ["Long", "Long (part 2)", "Long (part 3)"]
    # No paragraph is cut: each part starts at the beginning of one.
    assert all(c.body.startswith("Paragraph ") for c in chunks)
    joined = " ".join(" ".join(c.body.split()) for c in chunks)
    assert joined == " ".join(body.split())
    # Appending at the end leaves the earlier parts as they were.
    longer = split_document(text + "\nAppended paragraph.\n", "docs/long.md", limit=1_000)
    assert longer[:-1] == chunks[:-1]


def test_a_huge_line_and_a_huge_fence_are_cut_to_the_limit() -> None:
    text = "# Data\n\n" + "x" * 2_500 + "\n\n```\n" + "\n".join(["code line"] * 300) + "\n```"
    chunks = split_document(text, "d.md", limit=1_000)
    assert all(0 < len(c.body) <= 1_000 for c in chunks)
    assert sum(c.body.count("x") for c in chunks) == 2_500
    assert sum(c.body.count("code line") for c in chunks) == 300


def test_default_limit_keeps_every_text_under_the_store_limit() -> None:
    from memory.sanitize import MAX_TEXT_CHARS

    text = "# " + "h" * 500 + "\n\n" + ("lorem ipsum " * 40 + "\n\n") * 300
    chunks = split_document(text, "docs/" + "d" * 200 + ".md")
    assert all(len(c.text) < MAX_TEXT_CHARS for c in chunks)
    assert all(len(c.title) <= docs.MAX_TITLE_CHARS for c in chunks)
    assert len({c.title for c in chunks}) == len(chunks)  # still unique after truncation


def test_non_markdown_files_are_one_section() -> None:
    text = "Project\n=======\n\n# not markdown here\n\nText."
    chunks = split_document(text, "README.rst")
    assert len(chunks) == 1
    assert chunks[0].title == "README.rst"
    assert chunks[0].body == text


def test_an_empty_document_has_no_chunks() -> None:
    assert split_document("", "a.md") == []
    assert split_document("\n\n# Only\n\n## Headings\n", "a.md") == []


LINES = st.sampled_from(["# H1", "## H2", "### H3", "```", "~~~", "", "  ", "text", "more text",
                         "# ", "#tag", "    # code", "---", "x" * 120])


@settings(max_examples=150, deadline=None)
@given(st.lists(LINES, max_size=60))
def test_splitting_invariants(lines: list[str]) -> None:
    text = "\n".join(lines)
    chunks = split_document(text, "p.md", limit=300)
    assert all(c.body.strip() and len(c.body) <= 300 for c in chunks)
    assert len({c.title for c in chunks}) == len(chunks)
    assert split_document(text.replace("\n", "\r\n"), "p.md", limit=300) == chunks
    # Every line of text that is not a heading ends up in some chunk.
    kept = "\n".join(c.body for c in chunks)
    assert kept.count("more text") == text.count("more text")


# -- which files ---------------------------------------------------------------------------
@pytest.mark.parametrize("rel", [
    "CLAUDE.md", "AGENTS.md", "pkg/sub/CLAUDE.md", ".claude/CLAUDE.md", "README.md",
    "README", "readme.rst", "README.txt", "README.ja.md", "docs/setup.md", "docs/a/b/c.markdown",
    "doc/adr/0001-use-lancedb.md", "adr/0002.md", "architecture/decisions/0003-x.md",
    "services/api/adrs/0004.md",
])
def test_default_knowledge_files(rel: str) -> None:
    assert docs.is_default_knowledge(rel)
    assert Scope().covers(rel)


@pytest.mark.parametrize("rel", [
    "src/main.py", "pkg/README.md", "README.html", "docs/image.png", "notes/todo.md",
    "docs/.setup.md.swp", "docs/.#setup.md", "docs/setup.md~", "docs/#setup.md#", "docs/4913",
    "docs/.hidden.md", ".git/CLAUDE.md", "node_modules/pkg/CLAUDE.md", ".venv/x/AGENTS.md",
    "docs/../secret.md", "/etc/passwd", "docs//x.md", "docs/setup.md.tmp", "",
])
def test_not_knowledge_files(rel: str) -> None:
    assert not docs.is_default_knowledge(rel)
    assert not Scope().covers(rel)


def test_scope_extras_name_a_file_or_the_markdown_under_a_folder() -> None:
    scope = Scope(frozenset({"notes", "TODO.txt", ".notes"}))
    assert scope.covers("notes/a.md") and scope.covers("notes/deep/b.markdown")
    assert not scope.covers("notes/a.txt")
    assert scope.covers("TODO.txt")
    assert scope.covers(".notes/x.md")  # named explicitly: hidden is fine
    assert not scope.covers("notes/.a.md.swp") and not scope.covers("notesx/a.md")
    assert Scope(frozenset({""})).covers("src/any/where.md")  # the whole project


def test_decode_doc() -> None:
    assert docs.decode_doc("héllo".encode()) == "héllo"
    assert docs.decode_doc(b"\xef\xbb\xbfbom") == "bom"
    assert docs.decode_doc(b"PNG\x00\x01") == Skip("binary file")
    assert docs.decode_doc(b"caf\xe9") == Skip("not UTF-8 text")


# -- events --------------------------------------------------------------------------------
def test_classify_events() -> None:
    scope = Scope()
    assert classify("docs/a.md", False, scope) == Change("file", "docs/a.md")
    assert classify("docs/.a.md.swp", False, scope) is None
    assert classify("docs/4913", False, scope) is None
    assert classify("src/x.py", False, scope) is None
    assert classify(".git/index", False, scope) is None
    assert classify(".git/refs", True, scope) is None
    assert classify("node_modules/x", True, scope) is None
    assert classify("docs/sub", True, scope) == Change("folder", "docs/sub")
    assert classify(".gitignore", False, scope) == Change("folder", "")
    assert classify("docs/.gitignore", False, scope) == Change("folder", "docs")
    assert classify("../elsewhere.md", False, scope) is None
    assert classify(".", True, scope) is None


def test_covering_folders() -> None:
    assert _covering(["docs/a", "docs", "adr/x", "docs/b/c"]) == ["docs", "adr/x"]
    assert _covering(["docs", ""]) == [""]
    assert _covering(["docs2", "docs"]) == ["docs", "docs2"]


# -- the disk ------------------------------------------------------------------------------
def test_read_doc_skips_what_must_not_be_synced(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "docs").mkdir(parents=True)
    outside = tmp_path / "outside.md"
    outside.write_text("# secret\n")
    (root / "docs/ok.md").write_text("# ok\n", encoding="utf-8")
    (root / "docs/out.md").symlink_to(outside)
    (root / "docs/in.md").symlink_to(root / "docs/ok.md")
    (root / "docs/dangling.md").symlink_to(root / "docs/nothing.md")
    (root / "docs/dir.md").mkdir()
    (root / "docs/big.md").write_text("x" * 2_000)
    (root / "docs/bin.md").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    assert docs.read_doc(root, "docs/ok.md") == "# ok\n"
    assert docs.read_doc(root, "docs/in.md") == "# ok\n"
    assert docs.read_doc(root, "docs/out.md") == Skip("a link to outside the project")
    assert docs.read_doc(root, "docs/dangling.md") is None
    assert docs.read_doc(root, "docs/missing.md") is None
    assert docs.read_doc(root, "docs/dir.md") == Skip("not a regular file")
    assert docs.read_doc(root, "docs/bin.md") == Skip("binary file")
    big = docs.read_doc(root, "docs/big.md", max_bytes=1_000)
    assert isinstance(big, Skip) and big.reason.startswith("too large (2,000 bytes")


def test_list_files_and_ignored_in_a_git_repo(make_repo) -> None:
    repo = make_repo("listing")
    (repo / "docs").mkdir()
    (repo / ".gitignore").write_text("docs/private.md\nbuild/\n")
    for rel in ("README.md", "docs/a.md", "docs/private.md", "build/CLAUDE.md", "src/x.py"):
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text("text\n")
    subprocess.run(["git", "add", "README.md"], cwd=repo, check=True)
    files = docs.list_files(repo)
    assert "README.md" in files and "docs/a.md" in files and "src/x.py" in files
    assert "docs/private.md" not in files and "build/CLAUDE.md" not in files
    assert not any(f.startswith(".git/") for f in files)
    assert docs.list_files(repo, "docs") == ["docs/a.md"]
    assert docs.ignored(repo, ["docs/private.md", "docs/a.md", "build/CLAUDE.md", "new.md"]) \
        == {"docs/private.md", "build/CLAUDE.md"}
    assert docs.ignored(repo, []) == set()


def test_list_files_outside_git_walks_everything_but_git_dirs(tmp_path: Path) -> None:
    root = tmp_path / "plain"
    for rel in ("CLAUDE.md", "docs/a.md", "node_modules/p/CLAUDE.md", "sub/.git/HEAD"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("x")
    assert docs.list_files(root) == ["CLAUDE.md", "docs/a.md"]
    assert docs.ignored(root, ["CLAUDE.md"]) == set()  # no git, no ignore rules


def test_paths_with_odd_bytes_do_not_crash(tmp_path: Path) -> None:
    root = tmp_path / "odd"
    (root / "docs").mkdir(parents=True)
    name = os.fsdecode(b"docs/caf\xe9.md")
    (root / name).write_bytes(b"# t\n\nx\n")
    assert name in docs.list_files(root)
    assert docs.read_doc(root, name) == "# t\n\nx\n"
