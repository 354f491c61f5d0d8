"""Transcript reading and heuristic extraction (pure functions, real fixture transcript)."""

from __future__ import annotations

import json
from pathlib import Path

from integrations.transcript import (
    Turn,
    classify,
    extract,
    parse_lines,
    read_new,
    sentences,
    turn_of,
)

FIXTURE = Path(__file__).parent / "fixtures" / "claude_transcript.jsonl"


def _line(kind: str, content: object, **extra: object) -> str:
    return json.dumps({"type": kind, "message": {"role": kind, "content": content}, **extra})


def test_fixture_yields_the_decision_convention_and_bugs_only() -> None:
    chunk = read_new(FIXTURE, 0)
    assert chunk.end == FIXTURE.stat().st_size
    assert chunk.bad_lines == 1  # the line cut off mid-write
    found = extract(chunk.turns)
    by_kind = {(c.kind, c.source): c.text for c in found}
    assert len(found) == 4
    assert "httpx for the new async upload client" in by_kind[("decision", "user")]
    assert "--timeout 30" in by_kind[("convention", "user")]
    bugs = [c.text for c in found if c.kind == "bug"]
    assert all(c.source == "agent" for c in found if c.kind == "bug")
    # The problem, its cause and its fix end up in one memory.
    assert any("ConnectionResetError" in b and "root cause" in b
               and "new `requests.Session` for every retry" in b for b in bugs)
    assert any("HTTP 401" in b and "rotate the token" in b for b in bugs)
    everything = " ".join(c.text for c in found)
    for noise in ("happy to help", "Great, thanks", "Should we use httpx", "patience",
                  "SQLite", "tabs", "requests here", "French", "/clear", "12 passed"):
        assert noise not in everything, noise


def test_only_spoken_text_becomes_a_turn() -> None:
    assistant = {"type": "assistant", "message": {"role": "assistant", "content": [
        {"type": "thinking", "thinking": "We decided to use tabs."},
        {"type": "text", "text": "Done."},
        {"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "ls"}}]}}
    assert turn_of(assistant) == Turn("assistant", "Done.")
    result = {"type": "user", "message": {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "t1", "content": "We decided to use tabs."}]}}
    assert turn_of(result) is None
    for flag in ("isSidechain", "isMeta", "isCompactSummary"):
        assert turn_of({**assistant, flag: True}) is None
    assert turn_of({"type": "summary", "summary": "x"}) is None
    # Context injected by hooks (memctl's own output) is never captured again.
    injected = {"type": "user", "message": {"role": "user", "content":
                "Memories from this project's store: ...\nWe decided to use Postgres."}}
    assert turn_of(injected) is None
    wrapped = {"type": "user", "message": {"role": "user", "content":
               "<system-reminder>Always use tabs.</system-reminder>Let's use Postgres here."}}
    assert turn_of(wrapped) == Turn("user", "Let's use Postgres here.")


def test_classify_statements_not_questions_or_hedges() -> None:
    assert classify("We decided to keep the retry limit at three attempts.") == "decision"
    assert classify("Going with Redis for the job queue because it is already deployed.") \
        == "decision"
    assert classify("Never commit generated protobuf files to the repository.") == "convention"
    assert classify("The importer crashed on empty files; the fix was to skip them.") == "bug"
    assert [c.kind for c in extract([Turn("assistant", "Login failed for SSO users after the "
                                          "upgrade. Fix: trust the X-Forwarded headers.")])] \
        == ["bug"]
    assert classify("Should we use Redis for the job queue instead?") is None
    assert classify("Maybe we could decide to use Redis for the job queue later.") is None
    assert classify("Let me read the file first to understand it.") is None
    assert classify("I always forget where I put the config file honestly") is None
    assert classify("Ok.") is None
    assert classify("Let's use grep to find every caller of parse_config.") is None
    assert classify("Never mind, the old approach works fine for this case.") is None
    # A problem alone is not a memory until its fix is known.
    assert classify("The upload test fails with a timeout on CI.") is None


def test_fix_pairs_with_a_recent_problem_only() -> None:
    turns = [Turn("user", "The nightly export job crashes with a KeyError on old rows."),
             Turn("assistant", "The root cause is a missing default for the `region` column.")]
    found = extract(turns)
    assert [c.kind for c in found] == ["bug"]
    assert "KeyError" in found[0].text and "missing default" in found[0].text
    far = [turns[0], *[Turn("assistant", f"Step {n} is done and checked now.") for n in range(8)],
           turns[1]]
    assert extract(far) == []


def test_sentences_drop_code_blocks_and_markup() -> None:
    text = "- **Always** run `make lint` first.\n```python\n# we decided x\n```\n1. Next one here."
    assert sentences(text) == ["Always run `make lint` first.", "Next one here."]


def test_extract_caps_and_deduplicates() -> None:
    turns = [Turn("user", f"From now on, always name test fixture number {n} clearly.")
             for n in range(20)]
    assert len(extract(turns, limit=5)) == 5
    same = [Turn("user", "Let's use ruff for linting in this repository.")] * 3
    assert len(extract(same)) == 1


def test_read_new_resumes_and_survives_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    first = _line("user", "Let's use ruff for linting in this repository.") + "\n"
    path.write_text(first + "not json at all\n" + '{"type": "user"', encoding="utf-8")
    chunk = read_new(path, 0)
    assert (chunk.lines, chunk.bad_lines, len(chunk.turns)) == (2, 1, 1)
    assert chunk.end == len((first + "not json at all\n").encode())
    # The partial last line is read once it is complete, and nothing before it again.
    with path.open("a", encoding="utf-8") as fh:
        fh.write(', "message": {"role": "user", "content": "Later text here."}}\n')
    again = read_new(path, chunk.end)
    assert [t.text for t in again.turns] == ["Later text here."]
    assert read_new(path, again.end).turns == []
    # A file shorter than the cursor was replaced: read from the start.
    path.write_text(first, encoding="utf-8")
    assert len(read_new(path, again.end).turns) == 1


def test_read_new_caps_what_it_reads(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    small = _line("user", "Let's use ruff for linting in this repository.") + "\n"
    huge = _line("assistant", "x" * 5000) + "\n"
    path.write_text(huge + small, encoding="utf-8")
    chunk = read_new(path, 0, max_bytes=1000)  # one line alone exceeds the cap: skipped
    assert chunk.turns == [] and chunk.end == 1000
    rest = read_new(path, chunk.end, max_bytes=len(huge))
    assert [t.text for t in rest.turns] == ["Let's use ruff for linting in this repository."]
    assert rest.bad_lines == 1  # the tail of the skipped line


def test_parse_lines_ignores_non_objects() -> None:
    chunk = parse_lines([b"[1, 2]", b"42", b"", b'{"type": "assistant"}'])
    assert chunk.turns == [] and chunk.bad_lines == 0 and chunk.lines == 3
