"""The CLI contract, end to end through real subprocesses on a real store."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import CliRunner, git


def add(cli: CliRunner, text: str, *args: str, **kw) -> str:
    r = cli("add", text, *args, **kw)
    assert r.code == 0, r.stderr
    return r.stdout.strip()


def test_add_search_show_list_forget_round_trip(cli: CliRunner) -> None:
    a = add(cli, "We chose LanceDB as the source of truth for memories", "--kind", "decision",
            "--tag", "storage", "--file", "memory/store/table.py")
    b = add(cli, "Run the tests with make test before pushing", "--kind", "convention")
    assert len(a) == 16 and a != b

    hits = cli("search", "which database stores the memories", "--json").json()
    assert hits[0]["id"] == a
    assert {"id", "text", "kind", "score"} <= set(hits[0])
    assert hits[0]["kind"] == "decision"

    shown = cli("show", a, "--json").json()
    assert shown["text"].startswith("We chose LanceDB")
    assert shown["tags"] == ["storage"] and shown["files"] == ["memory/store/table.py"]
    assert shown["source"] == "user"

    listed = cli("list", "--json").json()
    assert {m["id"] for m in listed} == {a, b}

    human = cli("search", "make test")
    assert human.code == 0 and b in human.stdout

    r = cli("forget", a, "--json")
    assert r.json() == {"id": a, "status": "archived"}
    ids = [h["id"] for h in cli("search", "which database stores the memories", "--json").json()]
    assert a not in ids
    assert a in {m["id"] for m in cli("list", "--archived", "--json").json()}


def test_add_reads_stdin_and_returns_record_as_json(cli: CliRunner) -> None:
    r = cli("add", "-", "--kind", "fact", "--json", input="The API listens on port 8080\n")
    record = r.json()
    assert record["text"] == "The API listens on port 8080"
    assert record["status"] == "stored" and record["kind"] == "fact"
    assert record["memory_status"] == "active"


def test_exact_duplicate_returns_existing_id(cli: CliRunner) -> None:
    first = add(cli, "Use ruff for linting")
    second = cli("add", "  use   RUFF for linting ", "--json").json()
    assert second["id"] == first and second["status"] == "duplicate"
    assert len(cli("list", "--json").json()) == 1


def test_near_duplicate_is_reported(cli: CliRunner) -> None:
    first = add(cli, "The staging database runs PostgreSQL 16 on port 5433", "--kind", "fact")
    r = cli("add", "Staging's database is PostgreSQL 16, listening on port 5433", "--kind",
            "fact", "--json").json()
    assert r["status"] == "stored"
    assert [s["id"] for s in r["similar"]] == [first]


def test_supersede_keeps_history(cli: CliRunner) -> None:
    old = add(cli, "Deploys go out on Fridays", "--kind", "decision")
    new = add(cli, "Deploys go out on Tuesdays, never on Fridays", "--kind", "decision",
              "--supersedes", old)
    hits = [h["id"] for h in cli("search", "when do deploys go out", "--json").json()]
    assert new in hits and old not in hits
    with_old = cli("search", "when do deploys go out", "--include-superseded", "--json").json()
    assert old in [h["id"] for h in with_old]
    shown = cli("show", old, "--json").json()
    assert shown["superseded_by"] == new and shown["valid_to"] is not None
    assert shown["history"] == [old, new]
    assert cli("show", new, "--json").json()["supersedes"] == old


def test_project_isolation_between_two_git_repos(cli: CliRunner, make_repo) -> None:
    one, two = make_repo("api"), make_repo("other/api")  # same basename on purpose
    add(cli, "Service one uses gRPC for internal calls", cwd=one)
    add(cli, "Service two uses REST for internal calls", cwd=two)
    (one / "sub").mkdir()
    hits_one = cli("search", "internal calls", "--json", cwd=one / "sub").json()
    hits_two = cli("search", "internal calls", "--json", cwd=two).json()
    assert [h["text"] for h in hits_one] == ["Service one uses gRPC for internal calls"]
    assert [h["text"] for h in hits_two] == ["Service two uses REST for internal calls"]
    assert hits_one[0]["project"] == str(one.resolve())
    # Outside any repo: the default project sees neither.
    assert cli("search", "internal calls", "--json", cwd=one.parent.parent).json() == []
    # An explicit project path selects that repo's memories from anywhere.
    explicit = cli("search", "internal calls", "--project", str(two), "--json").json()
    assert [h["text"] for h in explicit] == ["Service two uses REST for internal calls"]


def test_redacted_secret_never_reaches_disk(cli: CliRunner, home: Path) -> None:
    secret = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
    r = cli("add", f"CI pushes with GITHUB_TOKEN {secret} from the deploy job", "--json")
    record = r.json()
    assert secret not in r.stdout and "github" in " ".join(record["redactions"])
    assert "[REDACTED" in record["text"]
    cli("search", "deploy job token", "--json")
    cli("reindex")
    for f in home.rglob("*"):
        if f.is_file():
            assert secret.encode() not in f.read_bytes(), f


def test_hard_forget_erases_from_disk(cli: CliRunner, home: Path) -> None:
    marker = "zqxjvplumbicorn"
    keep = add(cli, "Keep this note about the cache layer")
    gone = add(cli, f"The codename of the migration is {marker}")
    assert any(marker.encode() in f.read_bytes() for f in home.rglob("*") if f.is_file())
    r = cli("forget", gone, "--hard", "--json")
    assert r.json()["status"] == "erased"
    for f in home.rglob("*"):
        if f.is_file():
            assert marker.encode() not in f.read_bytes(), f"{marker} still in {f}"
    assert cli("show", gone).code != 0
    assert cli("show", keep).code == 0
    assert [h["id"] for h in cli("search", "cache layer", "--json").json()] == [keep]
    assert cli("doctor", "--json").json()["clean"]


def test_export_import_is_idempotent(cli: CliRunner, tmp_path: Path) -> None:
    add(cli, "Prefer dataclasses over dicts for records", "--kind", "convention")
    add(cli, "The flaky test is test_upload_retry", "--kind", "bug")
    exported = cli("export").stdout
    assert len(exported.splitlines()) == 2
    f = tmp_path / "dump.jsonl"
    f.write_text(exported + "not json\n")
    r = cli("import", str(f), "--project", "elsewhere", "--json").json()
    assert r["imported"] == 2 and r["skipped"] == 0 and r["errors"][0]["line"] == 3
    again = cli("import", str(f), "--project", "elsewhere", "--json").json()
    assert again["imported"] == 0 and again["skipped"] == 2
    hits = cli("search", "flaky test", "--project", "elsewhere", "--json").json()
    assert hits[0]["source"] == "import"
    # One id twice in a file (edited by hand): the first record wins, nothing is doubled.
    record = {**json.loads(exported.splitlines()[0]), "id": "0000000000abcdef"}
    twice = tmp_path / "twice.jsonl"
    twice.write_text(json.dumps(record) + "\n"
                     + json.dumps({**record, "text": "Prefer attrs classes"}) + "\n")
    r = cli("import", str(twice), "--project", "third", "--json").json()
    assert r["imported"] == 1 and r["skipped"] == 1
    assert len(cli("export", "--project", "third").stdout.splitlines()) == 1


def test_reindex_stats_and_doctor(cli: CliRunner) -> None:
    for i in range(3):
        add(cli, f"Note number {i} about parseConfig in src/config/parse.py")
    assert cli("reindex", "--json").json() == {"indexed": 3}
    s = cli("stats", "--json").json()
    assert s["total"] == 3 and s["by_kind"] == {"note": 3}
    d = cli("doctor", "--json").json()
    assert d["clean"] and d["table_rows"] == d["index_docs"] == 3


def test_a_search_process_writes_its_usage_counts_before_it_ends(cli: CliRunner) -> None:
    # Counts are written at exit (the process ends without interpreter finalisation): the
    # next process sees them, and exit codes are those of the command.
    a = add(cli, "The nightly export job writes invoice CSV files to the reports bucket")
    assert cli("show", a, "--json").json()["access_count"] == 0
    found = cli("search", "where does the nightly export write", "--json")
    assert found.code == 0 and found.json()[0]["id"] == a
    assert cli("show", a, "--json").json()["access_count"] == 1
    assert cli("show", "0123456789abcdef").code == 1  # not found: exit 1, as before
    assert cli("search", "q", "-k", "0").code == 2  # bad input: exit 2


def test_errors_are_one_line_without_traceback(cli: CliRunner) -> None:
    cases = [
        ("add", "   "),
        ("add", "x", "--kind", "wish"),
        ("show", "nothex"),
        ("show", "0123456789abcdef"),
        ("forget", "../../etc"),
        ("search", "q", "-k", "0"),
        ("feedback", "0123456789abcdef", "great"),
        ("search", "x", "--since", "last tuesday-ish"),
        ("import", "/nonexistent/file.jsonl"),
        ("add", "x", "--project", "/no/such/dir"),
    ]
    for args in cases:
        r = cli(*args)
        assert r.code != 0, args
        assert "Traceback" not in r.stderr, (args, r.stderr)
        assert r.stderr.strip(), args
    assert cli("--help").code == 0


def test_git_subdirectory_resolves_to_repo_root(cli: CliRunner, make_repo) -> None:
    repo = make_repo("svc")
    (repo / "a" / "b").mkdir(parents=True)
    (repo / "a" / "b" / "f.txt").write_text("x")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "init")
    mid = add(cli, "Root-level memory", cwd=repo / "a" / "b")
    assert cli("show", mid, "--json", cwd=repo).json()["project"] == str(repo.resolve())


def test_briefing_lists_current_knowledge_within_budget(cli: CliRunner) -> None:
    conv = add(cli, "Always run make test before pushing", "--kind", "convention")
    old = add(cli, "We deploy with Heroku", "--kind", "decision")
    new = add(cli, "We deploy with Fly.io, not Heroku", "--kind", "decision", "--supersedes", old)
    out = cli("briefing", "--json", "--budget", "600").json()
    assert conv in out["ids"] and new in out["ids"] and old not in out["ids"]
    assert out["chars"] <= 600 and "## conventions" in out["text"]
    assert cli("briefing", "--budget", "5").code == 2
