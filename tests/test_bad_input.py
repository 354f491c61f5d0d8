"""Bad input everywhere it enters: the parsers, import, the CLI and the MCP tools.

Each bad input gets a clear one-line error (or a documented limit), the process keeps
serving, and a canary memory stored beforehand is untouched: same id, text, status and
trust, still found by search. Everything runs on real stores, real subprocesses and a real
MCP stdio session; hypothesis drives the parsers and the tools.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from anyio.from_thread import start_blocking_portal
from conftest import CliRunner, git, seed_models
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters
from test_mcp_server import AGENT, TIMEOUT, ok, text_of

from memory import sanitize
from memory.briefing import briefing
from memory.config import paths
from memory.errors import InputError
from memory.project import Project, ProjectError, looks_like_path, resolve_project
from memory.recall import RecallOptions
from memory.recall.channels.temporal import window_sql
from memory.redact import redact
from memory.service import LazyEmbedder, Memories
from memory.store import MemoryStore
from memory.timeparse import parse_time_expression, strip_time_expression
from memory.transfer import import_lines

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SYNTAX = "()[]{}:^~*?\\/+-!&|\"'`<>=%$#@,;"
SURROGATES = ["\ud800", "\udbff\udbff", "\udc80", "\udfff", "\ud83d"]
CANARY = "Canary: the blue database keeps its backups for ninety days"

# -- strategies ---------------------------------------------------------------------------

json_scalars = (st.none() | st.booleans() | st.integers(-(10**30), 10**30)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                           max_leaves=16)
syntax_queries = st.lists(
    st.sampled_from([*SYNTAX, "AND", "OR", "NOT", "blue", "database", "*", "\"unclosed",
                     "field:value", "a^3", "~2", "[1 TO 5]", "\\", "-", "'"]),
    min_size=1, max_size=12).map(" ".join)
# Text with what real input carries: controls, NUL, CRs, odd spaces, lone surrogates.
wild_text = st.lists(st.one_of(st.text(max_size=30), st.sampled_from(SURROGATES),
                               st.sampled_from(["\x00", "\r\n", "\r", "\x1b[31m", "\u2028",
                                                "\ufeff", "\x7f", " ", "\t"])),
                     max_size=10).map("".join)
# JSON-safe text for the MCP client (it cannot encode lone surrogates; the raw stdio test
# sends those).
client_text = st.one_of(st.text(max_size=120), syntax_queries, st.just(""), st.just("   \n\t"),
                        st.just("\x00\x01\x02"), st.just("x" * 40_000),
                        st.just("\u202e\u200b\ufeff"))


def one_line_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


# -- fixtures: one store and one MCP session for the whole module ---------------------------

@pytest.fixture(scope="module")
def shared_home(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Path:
    home = tmp_path_factory.mktemp("bad-input") / "memctl-home"
    seed_models(home, models_dir)
    return home


@pytest.fixture(scope="module")
def shared(shared_home: Path, embedder) -> Memories:
    """A store in-process (parsers, import), project 'bad-input'; it holds the canary."""
    mem = Memories(MemoryStore(paths(shared_home)), LazyEmbedder(lambda: embedder),
                   Project("bad-input", "bad-input"))
    mem.remember(CANARY, kind="fact", source="user")
    return mem


@pytest.fixture(scope="module")
def canary(shared: Memories) -> Any:
    """The canary as it was stored, before any bad input."""
    rows = shared.store.table.rows(f"{shared._where(False)} AND content_hash = "
                                   f"'{shared.prepare(CANARY).content_hash}'")
    assert len(rows) == 1
    return rows[0]


def assert_canary_intact(mem: Memories, before: Any) -> None:
    now = mem.get(before.id)
    assert (now.text, now.status, now.superseded_by, now.valid_to) == (
        before.text, "active", None, None)
    assert (now.trust_alpha, now.trust_beta) == (before.trust_alpha, before.trust_beta)
    hits = mem.search("how long are backups of the blue database kept", RecallOptions(k=3))
    assert before.id in [h.memory.id for h in hits]


# -- parsers ------------------------------------------------------------------------------

def check_clean(text: str, limit: int) -> None:
    text.encode("utf-8")  # no lone surrogates left
    assert text and text == text.strip() and len(text) <= limit
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", text)


@SETTINGS
@given(st.one_of(wild_text, json_values))
def test_clean_text_accepts_or_refuses_anything(value: object) -> None:
    try:
        text = sanitize.clean_text(value, "text", 200)
    except InputError as exc:
        assert "\n" not in str(exc) and str(exc)
        return
    check_clean(text, 200)
    assert sanitize.clean_text(text, "text", 200) == text  # idempotent


@SETTINGS
@given(st.one_of(json_values, st.lists(wild_text, max_size=70)))
def test_clean_tags_and_files_accept_or_refuse_anything(value: object) -> None:
    for clean, limit, most in ((sanitize.clean_tags, sanitize.MAX_TAG_CHARS, sanitize.MAX_TAGS),
                               (sanitize.clean_files, 1024, sanitize.MAX_FILES)):
        try:
            items = clean(value)
        except InputError:
            continue
        assert len(items) == len(set(items)) <= most
        for item in items:
            check_clean(item, limit)


def test_surrogates_become_replacement_characters() -> None:
    assert sanitize.clean_text("caf\udcff au lait") == "caf\ufffd au lait"
    assert sanitize.clean_text("smile \ud83d\ude00") == "smile \U0001f600"  # a valid pair
    with pytest.raises(InputError, match="empty"):
        sanitize.clean_text("\x00\x01 \r\n\t")
    with pytest.raises(InputError, match="limit is 32,000"):
        sanitize.clean_text("x" * 10_000_000)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cwd for project resolution: a git repo inside a plain directory, and a symlink to it."""
    root = tmp_path_factory.mktemp("projects")
    repo = root / "outer" / "repo"
    (repo / "sub").mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    (root / "outer" / "link").symlink_to(repo / "sub")
    return root


project_names = st.one_of(
    wild_text,
    st.lists(st.sampled_from(["..", ".", "/", "~", "outer", "repo", "link", "sub", "x", "'",
                              "\\", "..\\..", "%2e%2e", "\x00", " "]), max_size=8).map("".join),
)


@SETTINGS
@given(project_names)
def test_project_names_and_paths_resolve_safely(sandbox: Path, value: str) -> None:
    with contextlib.chdir(sandbox / "outer" / "repo" / "sub"):
        try:
            project = resolve_project(value)
        except ProjectError as exc:
            assert "\n" not in str(exc)
            str(exc).encode("utf-8")
            return
        if value == "":  # no explicit project: the usual fallback
            assert project == resolve_project(None)
            return
    key = project.key
    key.encode("utf-8")
    assert not any(ord(c) < 32 or ord(c) == 127 for c in key)
    if looks_like_path(value):
        # A real, absolute, resolved directory: no '..' survives into the key.
        assert Path(key).is_absolute() and Path(key).is_dir()
        assert ".." not in Path(key).parts and str(Path(key).resolve()) == key
    else:
        assert key == value.strip()


def test_symlinks_dots_and_undecodable_paths(sandbox: Path, shared: Memories) -> None:
    repo = sandbox / "outer" / "repo"
    with contextlib.chdir(repo / "sub"):
        assert resolve_project("../sub").key == str(repo.resolve())
        assert resolve_project(str(sandbox / "outer" / "link")).key == str(repo.resolve())
        assert resolve_project(None).key == str(repo.resolve())
        for bad in ("~no-such-user-memctl/x", "/" + "a" * 5000, "../../nope-escape",
                    "/no/such/dir", "caf\udcff", "\ud800"):
            with pytest.raises(ProjectError):
                resolve_project(bad)
    # A repository whose directory name is not UTF-8: keyed with \xNN escapes, and usable.
    raw = os.fsencode(sandbox) + b"/caf\xe9-repo"
    os.mkdir(raw)
    subprocess.run(["git", "init", "-q"], cwd=raw, check=True)
    project = resolve_project(None, cwd=Path(os.fsdecode(raw)))
    assert project.key.endswith("/caf\\xe9-repo") and project.name == "caf\\xe9-repo"
    mem = Memories(shared.store, shared.embedder, project)
    stored = mem.remember("The latin-1 named repository still stores memories")
    assert mem.get(stored.id).project == project.key
    assert [h.memory.id for h in mem.search("latin-1 named repository")] == [stored.id]


def test_project_names_never_make_paths(shared: Memories, shared_home: Path,
                                        canary: Any) -> None:
    """Projects are a column, never a directory: hostile names create nothing on disk."""
    before = {p.name for p in shared_home.iterdir()}
    outside = shared_home.parent
    names = ["..escape-marker", "escape-marker' OR '1'='1", "escape-marker\\..\\..",
             "escape-marker%2f..%2f.."]
    for name in names:
        if looks_like_path(name):  # names no directory: refused
            with pytest.raises(ProjectError):
                resolve_project(name)
            continue
        mem = Memories(shared.store, shared.embedder, resolve_project(name))
        mem.remember(f"A memory of the hostile project {name}")
        assert [m.project for m in mem.list()] == [name]
    assert {p.name for p in shared_home.iterdir()} == before
    for found in outside.rglob("*"):
        assert "escape-marker" not in found.name, found
    assert_canary_intact(shared, canary)


extreme_dates = st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31))
time_queries = st.one_of(
    wild_text,
    st.builds(lambda tpl, d, e: tpl.format(d=d.isoformat(), e=e.isoformat(),
                                           y=d.year, m=d.strftime("%B")),
              st.sampled_from(["notes before {d}", "after {d}", "since {d} blue", "until {e}",
                               "between {d} and {e}", "in {y}", "in {m} {y}", "on {d}",
                               "bugs from {d}"]),
              extreme_dates, extreme_dates),
    st.builds(lambda tpl, n: tpl.format(n=n),
              st.sampled_from(["{n} days ago", "in the last {n} days", "{n} weeks ago",
                               "last {n} months", "{n} years ago"]),
              st.integers(0, 10**15)),
)
extreme_nows = st.builds(
    lambda moment, minutes: moment.replace(tzinfo=timezone(timedelta(minutes=minutes))),
    st.datetimes(min_value=datetime(1, 1, 3), max_value=datetime(9999, 12, 29)),
    st.integers(min_value=-23 * 60, max_value=23 * 60),
)


@SETTINGS
@given(time_queries, extreme_nows)
def test_time_expressions_never_raise_and_always_make_valid_filters(
        shared: Memories, query: str, now: datetime) -> None:
    window = parse_time_expression(query, now)
    if window is None:
        return
    strip_time_expression(query, window)
    # Whatever the window, LanceDB accepts the filter it becomes.
    shared.store.table.count(f"{shared._where()} AND {window_sql(window)}")


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.none(), st.datetimes(timezones=st.just(UTC)), st.datetimes(
           min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31),
           timezones=st.sampled_from([UTC, timezone(timedelta(hours=14)),
                                      timezone(timedelta(hours=-12))]))),
       st.one_of(st.none(), st.datetimes(timezones=st.sampled_from(
           [UTC, timezone(timedelta(hours=-12)), timezone(timedelta(hours=14))]))),
       st.one_of(wild_text, syntax_queries))
def test_search_never_raises(shared: Memories, since: datetime | None, until: datetime | None,
                             query: str) -> None:
    try:
        hits = shared.search(query, RecallOptions(k=5, since=since, until=until))
    except InputError as exc:
        assert "empty" in str(exc)
        return
    for h in hits:
        assert h.memory.project == "bad-input"
        if since is not None:
            assert h.memory.valid_from >= since


def test_an_offset_since_is_compared_in_utc(shared: Memories) -> None:
    at = datetime(2021, 6, 1, 12, 0, tzinfo=UTC)
    memory = shared.prepare("The offset probe happened at noon UTC on June 1st 2021",
                            valid_from=at)
    shared.insert_many([memory])
    plus5 = timezone(timedelta(hours=5))
    # 16:00+05:00 is 11:00 UTC (before the event); 18:00+05:00 is 13:00 UTC (after it).
    for since, found in ((datetime(2021, 6, 1, 16, 0, tzinfo=plus5), True),
                         (datetime(2021, 6, 1, 18, 0, tzinfo=plus5), False)):
        hits = shared.search("offset probe noon", RecallOptions(k=5, since=since))
        assert (memory.id in [h.memory.id for h in hits]) is found, since


@SETTINGS
@given(st.one_of(wild_text, syntax_queries, st.text(max_size=400)))
def test_redact_never_raises(text: str) -> None:
    result = redact(text)
    assert isinstance(result.text, str)
    assert redact(result.text).text == result.text


@SETTINGS
@given(st.text(max_size=300) | syntax_queries)
def test_lexical_search_never_raises(shared: Memories, text: str) -> None:
    for hit_id, score in shared.store.lexical.search("bad-input", text, 10):
        assert len(hit_id) == 16 and score > 0
    # A lone surrogate (half an emoji) is replaced, not passed on to Tantivy.
    assert isinstance(shared.store.lexical.search("bad-input", text + "\ud83d db", 10), list)
    assert isinstance(shared.store.lexical.rare_terms("bad-input", "entities", "\ud83d" + text,
                                                      0.1), list)
    # A project key is a term, not syntax: a quote or an OR in it matches nothing else.
    assert shared.store.lexical.search(f"bad-input' OR {text}", "blue database", 10) == []


@SETTINGS
@given(st.fixed_dictionaries({}, optional={
    "text": st.one_of(wild_text, json_values), "kind": json_values | st.sampled_from(
        ["fact", "bug", "FACT", ""]), "title": json_values, "tags": json_values,
    "files": json_values, "importance": json_values | st.floats(), "supersedes": json_values}))
def test_prepare_accepts_or_refuses_anything(shared: Memories, fields: dict[str, Any]) -> None:
    text = fields.pop("text", "some text")
    supersedes = fields.pop("supersedes", None)
    try:
        memory = shared.prepare(text, supersedes=supersedes if isinstance(supersedes, str)
                                else None, **fields)
    except InputError as exc:
        assert "\n" not in str(exc)
        return
    check_clean(memory.text, sanitize.MAX_TEXT_CHARS + 200)  # redaction markers may add some
    assert 0.0 <= memory.importance <= 1.0 and memory.project == "bad-input"


# -- import ---------------------------------------------------------------------------------

def _valid_line(tag: str) -> tuple[str, str]:
    text = f"Imported fact {tag}: the queue drains every {len(tag)} seconds"
    return json.dumps({"text": text, "kind": "fact", "tags": ["import"]}), "valid"


import_lines_st = st.lists(st.one_of(
    st.builds(lambda: _valid_line(uuid.uuid4().hex)),
    st.tuples(st.text(max_size=60).filter(lambda s: s.strip() and not s.strip().startswith("{")),
              st.just("invalid")),
    st.tuples(json_values.map(json.dumps), st.just("unknown")),
    st.tuples(st.fixed_dictionaries({"text": json_values}, optional={
        "kind": json_values, "tags": json_values, "importance": json_values,
        "valid_from": json_values | st.sampled_from([
            "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-05:00", "not a date",
            "2024-02-30", "0001-01-01T00:00:00", "9999-12-31T23:59:59.999999"])}
        ).map(json.dumps), st.just("unknown")),
    st.tuples(st.sampled_from(['{"text": "x", "valid_from": "0001-01-01T00:00:00+01:00"}',
                               '{"text": "y", "created_at": "9999-12-31T23:59:59-05:00"}',
                               '{"text": "z", "valid_to": 5}', '[1, 2', '{"text": ',
                               '{"text": ' * 3000 + '"deep"' + '}' * 3000,
                               '{"text": "' + "x" * 40_000 + '"}', "\x00\x00\x00"]),
              st.just("invalid")),
    st.tuples(st.sampled_from(["", "   "]), st.just("blank")),
), max_size=10)


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(import_lines_st, st.booleans())
def test_import_reports_bad_lines_and_keeps_what_is_stored(
        shared: Memories, canary: Any, labelled: list[tuple[str, str]],
        attack_canary: bool) -> None:
    lines = [line for line, _ in labelled]
    if attack_canary:  # the canary's id with other text, and a claim to supersede it
        lines.append(json.dumps({"id": canary.id, "text": "The blue database is gone"}))
        lines.append(json.dumps({"text": f"Replacement {uuid.uuid4().hex}",
                                 "supersedes": canary.id, "superseded_by": canary.id}))
    count = shared.store.table.count()
    report = import_lines(shared, lines)
    errors = {e["line"]: e["error"] for e in report["errors"]}
    blank = sum(1 for line in lines if not line.strip())
    assert report["imported"] + report["skipped"] + len(errors) + blank == len(lines)
    assert shared.store.table.count() == count + report["imported"]
    for number, (line, label) in enumerate(labelled, start=1):
        if label == "invalid":
            assert number in errors, line[:80]
            assert "\n" not in errors[number] and errors[number]
        if label == "valid":
            text = json.loads(line)["text"]
            assert shared.store.table.count(f"{shared._where(False)} AND text = '{text}'") == 1
    assert_canary_intact(shared, canary)
    # Every read still works (a stored out-of-range date would break them all).
    shared.list(limit=0)
    shared.stats()
    briefing(shared)


# -- CLI ------------------------------------------------------------------------------------

def test_cli_bad_input(cli: CliRunner, tmp_path: Path) -> None:
    # (Each CLI call is a process start: the cases are grouped to keep this test short.)
    r = cli("add", CANARY, "--kind", "fact", "--json")
    assert r.code == 0, r.stderr
    canary = r.json()["id"]

    def refused(*args: str, needle: str, input: bytes | None = None) -> str:
        r = cli(*args, input=input)
        assert r.code == 2, (args[:3], r.stderr)
        line = one_line_error(r.stderr)
        assert needle in line, line
        assert "Traceback" not in r.stdout
        return line

    # 10 MB on stdin: refused, with the limit in the message.
    refused("add", "-", input=b"y" * 10_000_000, needle="the limit is 32,000")
    # Invalid UTF-8 and NUL on stdin, undecodable bytes in argv: kept, as U+FFFD.
    r = cli("add", "-", "--title", "Argv caf\udce9", "--json",  # argv bytes b"caf\xe9"
            input=b"Stdin with bad bytes \xff\xfe, a NUL \x00, and U+2028 \xe2\x80\xa8 and "
                  b"U+0085 \xc2\x85 inside")
    assert r.code == 0, r.stderr
    record = r.json()
    assert record["title"] == "Argv caf\ufffd"
    assert record["text"] == ("Stdin with bad bytes \ufffd\ufffd, a NUL , and U+2028 \u2028 and "
                              "U+0085 \x85 inside")
    # Dates, projects and options.
    refused("search", "x", "--since", "2024-05-02", "--until", "2024-05-01", needle="--since")
    refused("add", "x", "--project", "caf\udcff", needle="not valid UTF-8")
    r = cli("search", "x", "-k", "many")  # the option parser's usage error
    assert r.code == 2 and "Traceback" not in r.stderr and "'-k'" in r.stderr
    # A long message stays on one line whatever the terminal width.
    refused("serve", "--http", "--host", "0.0.0.0", needle="--allow-remote")
    # Search syntax is never parsed, and extreme dates make valid filters: the words still
    # find the canary.
    r = cli("search", '(blue AND "database) OR NOT backups^2 ~ -x:* [1 TO 5] \\ \'',
            "--since", "0001-01-01T00:00:00+05:00", "--until", "9999-12-31T23:00:00-05:00",
            "--json")
    assert r.code == 0, r.stderr
    assert canary in [h["id"] for h in r.json()]

    # Malformed JSONL: per-line errors with line numbers; good lines imported.
    dump = tmp_path / "mixed.jsonl"
    dump.write_bytes(b"\n".join([
        json.dumps({"text": "Imported: the cache is warmed at boot", "kind": "fact"}).encode(),
        b"\xff\xfe\x00 binary garbage",
        b'{"text": "year one", "valid_from": "0001-01-01T00:00:00+01:00"}',
        b'{"text": "far future", "created_at": "9999-12-31T23:59:59-05:00"}',
        json.dumps({"id": canary, "text": "The canary was rewritten"}).encode(),
        json.dumps({"text": "Claims to supersede the canary", "supersedes": canary}).encode(),
        b'{"text": ' * 5000 + b'"deep"' + b"}" * 5000,
        b"[1, 2, 3]",
        b'{"text": 42}',
    ]) + b"\n")
    r = cli("import", str(dump), "--json")
    assert r.code == 0, r.stderr
    report = r.json()
    assert report["imported"] == 2 and report["skipped"] == 1
    assert sorted(e["line"] for e in report["errors"]) == [2, 3, 4, 7, 8, 9]

    # The canary is untouched, and every read still works.
    exported = cli("export").stdout
    rows = {row["id"]: row for row in map(json.loads, filter(None, exported.split("\n")))}
    assert (rows[canary]["text"], rows[canary]["status"], rows[canary]["superseded_by"]) == (
        CANARY, "active", None)
    claim = next(row for row in rows.values() if row["text"] == "Claims to supersede the canary")
    assert claim["supersedes"] is None  # import links only records imported together
    # No half link for `doctor` to "repair" by marking the canary superseded.
    assert cli("doctor", "--json").json()["clean"]
    # The export (U+2028 and U+0085 raw inside its JSON strings) imports whole elsewhere.
    r = cli("import", "-", "--project", "elsewhere", "--json", input=exported)
    assert r.json() == {"imported": len(rows), "skipped": 0, "errors": []}


# -- MCP: one long-lived stdio session driven by hypothesis ---------------------------------

class Session:
    """A real MCP client session on a background event loop, callable from sync code."""

    def __init__(self, portal: Any, client: Client) -> None:
        self.portal = portal
        self.client = client

    def call(self, name: str, args: Any) -> Any:
        return self.portal.call(self.client.call_tool, name, args)


@pytest.fixture(scope="module")
def mcp(shared_home: Path) -> Iterator[Session]:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "mcp_server"], cwd=str(shared_home.parent),
        env={"MEMCTL_HOME": str(shared_home), "MEMCTL_PROJECT": "mcp-bad-input"})
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(
            Client(params, mode="legacy", cache=None, client_info=AGENT,
                   read_timeout_seconds=TIMEOUT)) as client:
        yield Session(portal, client)


@pytest.fixture(scope="module")
def mcp_canary(mcp: Session) -> dict[str, Any]:
    stored = ok(mcp.call("remember", {"content": CANARY, "kind": "fact"}))
    return ok(mcp.call("get", {"ids": [stored["id"]]}))["memories"][0]


def answered(session: Session, name: str, args: Any) -> Any:
    """The call returns a result (the server kept serving): a success with structured
    content, or an error whose message is one short line naming what was wrong."""
    result = session.call(name, args)
    if result.is_error:
        message = text_of(result)
        assert "\n" not in message and "Traceback" not in message, message
        assert 0 < len(message) <= 1000, message
        # A bare "Error executing tool X" is an unexpected exception inside the tool.
        assert message != f"Error executing tool {name}", args
    else:
        assert result.structured_content is not None
    return result


hex_ids = st.text(alphabet="0123456789abcdef", min_size=16, max_size=16)
bad_ids = st.one_of(hex_ids, st.text(max_size=20), json_values,
                    st.sampled_from(["../../etc/passwd", "0" * 17, "ABCDEF0123456789 ", ""]))
any_value = st.one_of(json_values, client_text)
iso_times = st.one_of(st.sampled_from(["0001-01-01T00:00:00+05:00", "9999-12-31T23:00:00-05:00",
                                       "2024-05-01", "last tuesday", "", "2024-13-45"]),
                      json_values)
MCP_SETTINGS = settings(max_examples=30, deadline=None,
                        suppress_health_check=[HealthCheck.too_slow])


@MCP_SETTINGS
@given(st.fixed_dictionaries({}, optional={
    "content": st.one_of(client_text, json_values), "kind": any_value, "tags": any_value,
    "files": any_value,
    "importance": st.one_of(st.floats(allow_nan=False, allow_infinity=False), json_values),
    "supersedes": bad_ids, "extra": json_values}))
def test_mcp_remember_with_anything(mcp: Session, mcp_canary: dict[str, Any],
                                    args: dict[str, Any]) -> None:
    answered(mcp, "remember", args)


@MCP_SETTINGS
@given(st.fixed_dictionaries({}, optional={
    "query": st.one_of(client_text, syntax_queries, json_values),
    "k": st.one_of(st.integers(-(10**20), 10**20), json_values),
    "kinds": any_value, "files": any_value, "since": iso_times, "until": iso_times,
    "include_superseded": json_values}))
def test_mcp_recall_with_anything(mcp: Session, mcp_canary: dict[str, Any],
                                  args: dict[str, Any]) -> None:
    result = answered(mcp, "recall", args)
    if not result.is_error:
        assert text_of(result) and len(text_of(result)) <= 1500


@MCP_SETTINGS
@given(st.one_of(
    st.fixed_dictionaries({"ids": st.lists(st.one_of(bad_ids, st.just("<canary>")),
                                           max_size=25)}),
    st.fixed_dictionaries({}, optional={"ids": json_values, "x": json_values})))
def test_mcp_get_with_anything(mcp: Session, mcp_canary: dict[str, Any],
                               args: dict[str, Any]) -> None:
    if isinstance(args.get("ids"), list):
        args["ids"] = [mcp_canary["id"] if i == "<canary>" else i for i in args["ids"]]
    result = answered(mcp, "get", args)
    if not result.is_error:
        for record in result.structured_content["memories"]:
            assert record["id"] in args["ids"]


@MCP_SETTINGS
@given(st.fixed_dictionaries({}, optional={"files": any_value,
                                           "budget": st.integers(-(10**20), 10**20)
                                           | json_values}))
def test_mcp_briefing_with_anything(mcp: Session, mcp_canary: dict[str, Any],
                                    args: dict[str, Any]) -> None:
    answered(mcp, "briefing", args)


invalid_contents = st.one_of(st.sampled_from(["", "   ", "\x00\x01\x02", "x" * 40_000, "\n\t "]),
                             json_values.filter(lambda v: not isinstance(v, str)))
invalid_verdicts = st.one_of(st.text(max_size=12).filter(
    lambda v: v not in ("helpful", "wrong", "outdated")), json_values.filter(
    lambda v: v not in ("helpful", "wrong", "outdated")))


@MCP_SETTINGS
@given(st.one_of(
    st.tuples(st.just("update"), st.fixed_dictionaries(
        {"id": st.one_of(st.just("<canary>"), bad_ids), "content": invalid_contents},
        optional={"kind": any_value, "tags": any_value, "importance": json_values})),
    st.tuples(st.just("feedback"), st.fixed_dictionaries(
        {"id": st.one_of(st.just("<canary>"), bad_ids), "verdict": invalid_verdicts})),
    st.tuples(st.just("forget"), st.fixed_dictionaries({}, optional={
        "id": bad_ids, "hard": json_values})),
))
def test_mcp_writes_with_bad_arguments_change_nothing(
        mcp: Session, mcp_canary: dict[str, Any], call: tuple[str, dict[str, Any]]) -> None:
    name, args = call
    if args.get("id") == "<canary>":
        args["id"] = mcp_canary["id"]
    assert answered(mcp, name, args).is_error, (name, args)


def test_mcp_extremes_then_the_canary_is_intact(mcp: Session,
                                                mcp_canary: dict[str, Any]) -> None:
    huge = answered(mcp, "remember", {"content": "z" * 10_000_000})
    assert huge.is_error and "32000" in text_of(huge)
    nested: Any = "deep"
    for _ in range(50):  # 100 levels: past the server's limit of 64
        nested = {"a": [nested]}
    assert answered(mcp, "recall", {"query": "x", "files": nested}).is_error
    assert answered(mcp, "recall", {"query": "x", **{f"k{i}": i for i in range(10_000)}})
    assert answered(mcp, "no_such_tool", {"query": "x"}).is_error
    res = answered(mcp, "recall", {"query": "blue database", "since": "0001-01-01T00:00:00+05:00",
                                   "until": "9999-12-31T23:00:00-05:00"})
    assert mcp_canary["id"] in [h["id"] for h in ok(res)["hits"]]

    # The canary: same text, status, trust and history; still recalled.
    now = ok(mcp.call("get", {"ids": [mcp_canary["id"]]}))["memories"][0]
    for key in ("text", "status", "current", "trust", "superseded_by", "valid_to", "history"):
        assert now[key] == mcp_canary[key], key
    hits = ok(mcp.call("recall", {"query": "how long are blue database backups kept"}))
    assert mcp_canary["id"] in [h["id"] for h in hits["hits"]]


# -- MCP over raw stdio: what a client library cannot send -----------------------------------

class RawServer:
    def __init__(self, home: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mcp_server"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, env={**os.environ, "MEMCTL_HOME": str(home),
                                            "MEMCTL_PROJECT": "raw-bad-input"})
        self.buffer = b""

    def send(self, line: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + b"\n")
        self.proc.stdin.flush()

    def reply(self, msg_id: Any, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The next reply with `msg_id`, waiting at most `timeout` seconds."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = timeout
        while True:
            while b"\n" in self.buffer:
                line, self.buffer = self.buffer.split(b"\n", 1)
                message = json.loads(line)
                if message.get("id") == msg_id and ("result" in message or "error" in message):
                    return message
            ready, _, _ = select.select([fd], [], [], deadline)
            assert ready, f"no reply to {msg_id!r}"
            chunk = os.read(fd, 1 << 20)
            assert chunk, "the server exited"
            self.buffer += chunk

    def call(self, msg_id: int, name: str, arguments: bytes) -> dict[str, Any]:
        self.send(b'{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"%s",'
                  b'"arguments":%s}}' % (msg_id, name.encode(), arguments))
        return self.reply(msg_id)["result"]

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            assert self.proc.wait(30) == 0
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(30)


@pytest.fixture(scope="module")
def raw(shared_home: Path) -> Iterator[RawServer]:
    server = RawServer(shared_home)
    server.send(json.dumps({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"}}}).encode())
    server.reply(0)
    server.send(b'{"jsonrpc":"2.0","method":"notifications/initialized"}')
    try:
        yield server
    finally:
        server.close()


def test_raw_stdio_surrogates_bad_bytes_and_malformed_messages(raw: RawServer) -> None:
    # Lone surrogate escapes (what JSON.stringify writes for a string cut inside an emoji)
    # used to be dropped without a reply: now answered, stored with U+FFFD.
    res = raw.call(1, "remember", b'{"content":"Raw surrogate \\ud83d note about herons"}')
    assert res["isError"] is False, res
    stored = res["structuredContent"]["id"]
    res = raw.call(2, "get", b'{"ids":["%s"]}' % stored.encode())
    assert res["structuredContent"]["memories"][0]["text"] == \
        "Raw surrogate \ufffd note about herons"
    pair = raw.call(3, "remember", b'{"content":"A valid pair \\ud83d\\ude00 and \\\\ud800"}')
    got = raw.call(4, "get", b'{"ids":["%s"]}' % pair["structuredContent"]["id"].encode())
    assert got["structuredContent"]["memories"][0]["text"] == \
        "A valid pair \U0001f600 and \\ud800"  # an escaped backslash is left alone
    res = raw.call(5, "recall", b'{"query":"\\udc80\\udc81 herons"}')
    assert stored in [h["id"] for h in res["structuredContent"]["hits"]]
    # Invalid UTF-8 inside a message: replaced, answered.
    res = raw.call(6, "remember", b'{"content":"Raw bad bytes \xff\xfe about egrets"}')
    assert res["isError"] is False, res
    # Not JSON: a parse error (id null); not JSON-RPC but with an id: invalid request.
    raw.send(b'{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"recall"')
    assert raw.reply(None)["error"]["code"] == -32700
    raw.send(b'{"jsonrpc":"2.0","id":8,"method":"ping","params":[1]}')
    assert raw.reply(8)["error"]["code"] == -32600
    raw.send(b'{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"recall",'
             b'"arguments":"not an object"}}')
    assert "error" in raw.reply(9)
    # Still serving.
    res = raw.call(10, "recall", b'{"query":"egrets"}')
    assert res["isError"] is False and res["structuredContent"]["hits"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=300), json_values.map(lambda v: json.dumps(v).encode()),
                 st.text(alphabet=SYNTAX + "ab\\ud83d0", max_size=80).map(str.encode)))
def test_raw_stdio_survives_any_line(raw: RawServer, line: bytes) -> None:
    line = line.replace(b"\n", b" ").replace(b"\r", b" ")
    if line.strip():
        raw.send(line)
    msg_id = 1_000_000 + int.from_bytes(os.urandom(3), "big")
    raw.send(b'{"jsonrpc":"2.0","id":%d,"method":"ping"}' % msg_id)
    assert raw.reply(msg_id, timeout=30)["result"] == {}
