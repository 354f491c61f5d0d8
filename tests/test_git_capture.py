"""Git auto-capture: hooks in real repositories, commits read with real git, real store.

Hook-driven captures run detached in the background, so those tests poll the store (bounded
by a timeout) until the memory appears; content tests call the capture code directly.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from integrations import gitcapture
from memory.locking import WriteLock
from memory.project import resolve_project
from memory.record import Memory
from memory.service import LazyEmbedder, Memories
from memory.store import MemoryStore
from memory.store.table import sql_str
from tests.conftest import CliRunner
from tests.secrets_corpus import SECRETS

WAIT_S = 120.0
HOOK_NAMES = ("post-commit", "post-merge", "post-rewrite")


def git_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEMCTL_", "GIT_"))}
    env.update({"MEMCTL_HOME": str(home), "GIT_AUTHOR_NAME": "Test",
                "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "Test",
                "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_CONFIG_NOSYSTEM": "1",
                "GIT_CONFIG_GLOBAL": os.devnull})
    env.update(extra)
    return env


def run_git(repo: Path, home: Path, *args: str, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=repo, env=git_env(home, **extra),
                          capture_output=True, text=True, timeout=30)


def git_ok(repo: Path, home: Path, *args: str, **extra: str) -> str:
    proc = run_git(repo, home, *args, **extra)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def commit(repo: Path, home: Path, name: str, content: str, message: str, **extra: str) -> str:
    path = repo / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    git_ok(repo, home, "add", "-A")
    git_ok(repo, home, "commit", "-q", "-m", message, **extra)
    return git_ok(repo, home, "rev-parse", "HEAD")


def by_sha(store: MemoryStore, repo: Path) -> dict[str, list[Memory]]:
    found: dict[str, list[Memory]] = {}
    rows = store.table.rows(f"project = {sql_str(str(repo.resolve()))} AND kind = 'commit'")
    for m in rows:
        found.setdefault(m.commit_sha or "", []).append(m)
    return found


def wait_for(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def captures_running(home: Path) -> bool:
    """Background captures (detached by the hooks) still running against `home`."""
    want = f"MEMCTL_HOME={home}".encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes()
            if (b"memory.cli" in cmd and b"capture" in cmd
                    and want in (proc / "environ").read_bytes().split(b"\0")):
                return True
        except OSError:
            continue  # exited meanwhile, or not ours to read
    return False


def wait_quiet(home: Path) -> None:
    wait_for(lambda: not captures_running(home), "background captures to finish")


@pytest.fixture
def repo_mem(store: MemoryStore, embedder) -> Callable[[Path], Memories]:
    def make(repo: Path) -> Memories:
        return Memories(store, LazyEmbedder(lambda: embedder), resolve_project(str(repo)))

    return make


# -- content ------------------------------------------------------------------------------
def test_commit_becomes_memory_with_files_author_diffstat_redacted(
        make_repo, home, store, repo_mem) -> None:
    repo = make_repo("content")
    text, secret, kind = next(s for s in SECRETS if s[2] == "github_token")
    (repo / "logo.bin").write_bytes(b"\x00\x01binary\x00")
    (repo / "docs").mkdir()
    (repo / "docs" / 'tab\tand "quote" é.md').write_text("a\nb\n")
    sha = commit(repo, home, "src/upload.py", "import x\n\ndef retry():\n    pass\n",
                 f"Add upload retry\n\nThe deploy job needs {text} for now.",
                 GIT_AUTHOR_NAME="Ada Lovelace", GIT_AUTHOR_EMAIL="ada@example.com",
                 GIT_AUTHOR_DATE="2024-03-05T10:20:30+01:00")
    mem = repo_mem(repo)

    report = gitcapture.capture(mem, repo, [sha])

    assert len(report.captured) == 1 and report.skipped == 0
    m = gitcapture.captured(mem, [sha])[sha]
    files = ["docs/tab\tand \"quote\" é.md", "logo.bin", "src/upload.py"]
    assert (m.kind, m.source, m.title, m.commit_sha) == ("commit", "git", "Add upload retry", sha)
    assert sorted(m.files) == files
    assert set(files) <= set(m.entities)
    assert m.valid_from.isoformat() == "2024-03-05T09:20:30+00:00"  # author date, in UTC
    assert f"Commit {sha[:12]} by Ada Lovelace <ada@example.com>" in m.text
    assert "Changed 3 files (+6 -0):" in m.text
    assert "  logo.bin (binary)" in m.text and "  src/upload.py (+4 -0)" in m.text
    assert secret not in m.text and f"[REDACTED:{kind}]" in m.text
    assert kind in m.redactions
    assert m.project == str(repo.resolve())

    again = gitcapture.capture(mem, repo, [sha])
    assert again.captured == [] and again.skipped == 1
    assert len(by_sha(store, repo)[sha]) == 1


def test_rewritten_links_or_stores_superseding(make_repo, home, store, repo_mem) -> None:
    repo = make_repo("rewrite")
    mem = repo_mem(repo)
    a = commit(repo, home, "a.txt", "1\n", "First try")
    gitcapture.capture(mem, repo, [a])
    git_ok(repo, home, "commit", "-q", "--amend", "-m", "Second try")
    b = git_ok(repo, home, "rev-parse", "HEAD")
    gitcapture.capture(mem, repo, [b])  # post-commit ran before post-rewrite: link them

    linked = gitcapture.capture_rewritten(mem, repo, gitcapture.parse_pairs(f"{a} {b}\n"))

    git_ok(repo, home, "commit", "-q", "--amend", "-m", "Third try")
    c = git_ok(repo, home, "rev-parse", "HEAD")
    stored = gitcapture.capture_rewritten(mem, repo, [(b, c)])  # c not captured yet
    d = commit(repo, home, "d.txt", "1\n", "Quick commit")  # its capture still pending...
    git_ok(repo, home, "commit", "-q", "--amend", "-m", "Quick commit, fixed")
    e = git_ok(repo, home, "rev-parse", "HEAD")
    both = gitcapture.capture_rewritten(mem, repo, [(d, e)])  # ...when the rewrite runs
    late = gitcapture.capture(mem, repo, [d])
    repeat = gitcapture.capture_rewritten(mem, repo, [(a, b), (b, c), (d, e)])

    assert (linked.superseded, linked.captured) == (1, [])
    assert stored.superseded == 1 and len(stored.captured) == 1
    assert both.superseded == 1 and len(both.captured) == 2
    assert (late.captured, late.skipped) == ([], 1)
    assert (repeat.skipped, repeat.superseded, repeat.captured) == (3, 0, [])
    rows = {sha: ms[0] for sha, ms in by_sha(store, repo).items()}
    assert sorted(len(ms) for ms in by_sha(store, repo).values()) == [1] * 5
    for old, new in ((a, b), (b, c), (d, e)):
        assert rows[old].superseded_by == rows[new].id and rows[new].supersedes == rows[old].id
    assert rows[c].title == "Third try" and rows[c].superseded_by is None


def test_parse_pairs_ignores_junk() -> None:
    a, b = "a" * 40, "b" * 40
    assert gitcapture.parse_pairs(f"{a} {b}\n\nnot a pair\n{b} {a} extra\n") == [(a, b), (b, a)]


# -- hooks --------------------------------------------------------------------------------
def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mode) for p in sorted(directory.iterdir())}


def test_install_is_idempotent_chains_and_uninstall_restores(
        cli: CliRunner, make_repo, home, tmp_path) -> None:
    repo = make_repo("hooks")
    hooks = repo / ".git" / "hooks"
    marker = tmp_path / "marker.log"
    old = hooks / "post-commit"
    old.write_text(f'#!/bin/sh\necho "ran $*" >> "{marker}"\nexit 3\n')
    old.chmod(0o755)
    before = snapshot(hooks)

    first = cli("hooks", "install", "--repo", str(repo), "--json")
    after_first = snapshot(hooks)
    mtimes = {p.name: p.stat().st_mtime_ns for p in hooks.iterdir()}
    second = cli("hooks", "install", "--repo", str(repo), "--json")

    assert first.code == 0 and second.code == 0, first.stderr + second.stderr
    assert snapshot(hooks) == after_first
    assert {p.name: p.stat().st_mtime_ns for p in hooks.iterdir()} == mtimes
    states = {s["hook"]: s for s in second.json()}
    assert all(states[h]["state"] == "installed" for h in HOOK_NAMES)
    assert states["post-commit"]["chained"] and not states["post-merge"]["chained"]
    assert (hooks / "post-commit.memctl-chained").read_bytes() == before["post-commit"][0]

    # The chained hook runs with the same arguments and its status is ours.
    direct = subprocess.run([str(hooks / "post-commit"), "a", "b"], cwd=repo,
                            env=git_env(home, MEMCTL_GIT_CAPTURE="0"), timeout=30)
    assert direct.returncode == 3
    commit(repo, home, "f.txt", "1\n", "via git", MEMCTL_GIT_CAPTURE="0")
    assert marker.read_text().splitlines() == ["ran a b", "ran "]

    gone = cli("hooks", "uninstall", "--repo", str(repo), "--json")
    assert gone.code == 0, gone.stderr
    assert snapshot(hooks) == before
    assert {s["hook"]: s["state"] for s in gone.json()} == {
        "post-commit": "foreign", "post-merge": "absent", "post-rewrite": "absent"}
    commit(repo, home, "f.txt", "2\n", "after uninstall")
    assert marker.read_text().splitlines()[-1] == "ran "


def test_worktree_hooks_path_and_conflict(cli: CliRunner, make_repo, home) -> None:
    repo = make_repo("hookspath")
    commit(repo, home, "a.txt", "1\n", "base")
    worktree = repo.parent / "wt"
    git_ok(repo, home, "worktree", "add", "-q", "-b", "side", str(worktree))

    from_worktree = cli("hooks", "install", "--repo", str(worktree), "--json")
    assert from_worktree.code == 0, from_worktree.stderr
    assert {s["path"] for s in from_worktree.json()} == {  # the hooks git runs: shared
        str(repo.resolve() / ".git" / "hooks" / h) for h in HOOK_NAMES}
    assert cli("hooks", "uninstall", "--repo", str(worktree)).code == 0

    git_ok(repo, home, "config", "core.hooksPath", ".githooks")  # relative to the work tree
    custom = repo / ".githooks"
    assert cli("hooks", "install", "--repo", str(repo)).code == 0
    assert sorted(p.name for p in custom.iterdir()) == sorted(HOOK_NAMES)
    assert not any((repo / ".git" / "hooks" / h).exists() for h in HOOK_NAMES)

    # someone replaced our hook while an older one is still chained: refuse, touch nothing
    (custom / "post-commit.memctl-chained").write_text("#!/bin/sh\n")
    (custom / "post-commit").write_text("#!/bin/sh\necho mine\n")
    before = snapshot(custom)
    conflict = cli("hooks", "install", "--repo", str(repo))
    assert conflict.code == 2 and "merge them by hand" in conflict.stderr
    assert "Traceback" not in conflict.stderr and snapshot(custom) == before
    outside = cli("hooks", "install", "--repo", str(repo.parent))
    assert outside.code == 2 and "not a git work tree" in outside.stderr


def test_hooks_capture_commit_amend_rebase_merge(
        cli: CliRunner, make_repo, home, store, tmp_path) -> None:
    """Git operations in quick succession, so their background captures overlap; the end
    state must not depend on the order in which they ran."""
    repo = make_repo("live")
    hooks = repo / ".git" / "hooks"
    rewrite_log = tmp_path / "rewrite.log"
    old = hooks / "post-rewrite"
    old.write_text(f'#!/bin/sh\n{{ echo "args: $*"; cat; }} >> "{rewrite_log}"\n')
    old.chmod(0o755)
    assert cli("hooks", "install", "--repo", str(repo)).code == 0

    a = commit(repo, home, "src/app.py", "print(1)\n", "Add the app")
    git_ok(repo, home, "commit", "-q", "--amend", "-m", "Add the app, amended")
    b = git_ok(repo, home, "rev-parse", "HEAD")
    # a feature branch, rebased onto a main that moved on
    git_ok(repo, home, "checkout", "-q", "-b", "feature")
    f1 = commit(repo, home, "feature.txt", "f\n", "Feature work")
    git_ok(repo, home, "checkout", "-q", "main")
    commit(repo, home, "main.txt", "m\n", "Main moves on", MEMCTL_GIT_CAPTURE="0")
    git_ok(repo, home, "rebase", "-q", "main", "feature")
    f2 = git_ok(repo, home, "rev-parse", "HEAD")
    # a merge brings in a commit no hook captured
    t1 = commit(repo, home, "topic.txt", "t\n", "Topic work", MEMCTL_GIT_CAPTURE="0")
    git_ok(repo, home, "checkout", "-q", "main")
    git_ok(repo, home, "merge", "-q", "--no-ff", "-m", "Merge feature", "feature")
    merge = git_ok(repo, home, "rev-parse", "HEAD")

    def done() -> bool:
        have = by_sha(store, repo)
        return (all(s in have for s in (a, b, f1, f2, t1, merge))
                and have[a][0].superseded_by is not None
                and have[f1][0].superseded_by is not None)

    wait_for(done, "every commit's memory")
    wait_quiet(home)
    final = {sha: ms[0] for sha, ms in by_sha(store, repo).items()}
    assert all(len(ms) == 1 for ms in by_sha(store, repo).values())
    assert set(final) == {a, b, f1, f2, t1, merge}
    for old_sha, new_sha in ((a, b), (f1, f2)):
        assert final[old_sha].superseded_by == final[new_sha].id
        assert final[new_sha].supersedes == final[old_sha].id
    assert final[a].files == ["src/app.py"] and final[b].title == "Add the app, amended"
    assert "merge" in final[merge].tags and final[merge].title == "Merge feature"
    assert sorted(final[merge].files) == ["feature.txt", "topic.txt"]
    log = rewrite_log.read_text()  # the chained post-rewrite hook got args and stdin
    assert "args: amend" in log and f"{a} {b}" in log
    assert "args: rebase" in log and f"{f1} {f2}" in log


def test_git_never_waits_for_nor_fails_with_the_capture(
        cli: CliRunner, make_repo, home, store, tmp_path) -> None:
    repo = make_repo("detached")
    assert cli("hooks", "install", "--repo", str(repo)).code == 0
    # While a capture cannot finish (we hold its lock), git must still return: a hook that
    # waited, or left git's output pipe open, would hit this call's timeout.
    with WriteLock(home / "git-capture.lock").hold():
        (repo / "a.txt").write_text("1\n")
        git_ok(repo, home, "add", "a.txt")
        held = run_git(repo, home, "commit", "-m", "while locked")
        sha = git_ok(repo, home, "rev-parse", "HEAD")
        assert sha not in by_sha(store, repo)
    wait_for(lambda: sha in by_sha(store, repo), "the capture once the lock is free")

    not_a_dir = tmp_path / "home-is-a-file"
    not_a_dir.write_text("")
    broken = tmp_path / "broken-home"
    broken.mkdir()
    (broken / "lance").write_text("")  # the store cannot create its table directory
    (repo / "a.txt").write_text("2\n")
    first = run_git(repo, home, "commit", "-qam", "two", MEMCTL_HOME=str(not_a_dir))
    (repo / "a.txt").write_text("3\n")
    second = run_git(repo, home, "commit", "-qam", "three", MEMCTL_HOME=str(broken))

    for proc in (held, first, second):
        assert proc.returncode == 0
        assert "memctl" not in proc.stderr and "Traceback" not in proc.stderr
    log = broken / "logs" / "git-capture.log"
    wait_for(lambda: log.exists() and "capture commit" in log.read_text(), "the failure log")
    assert "Error" in log.read_text() and not_a_dir.read_text() == ""


# -- back-fill ----------------------------------------------------------------------------
def test_backfill_since_max_and_idempotent(cli: CliRunner, make_repo, home, store) -> None:
    repo = make_repo("history")
    shas = [commit(repo, home, f"f{i}.txt", f"{i}\n", f"Change {i}") for i in range(5)]

    recent = cli("capture", "git", "--since", shas[2], "--repo", str(repo), "--json")
    capped = cli("capture", "git", "--max", "4", "--repo", str(repo), "--json")
    rest = cli("capture", "git", "--repo", str(repo))

    assert recent.code == 0, recent.stderr
    assert (recent.json()["captured"], recent.json()["skipped"]) == (2, 0)
    assert (capped.json()["captured"], capped.json()["skipped"],
            capped.json()["not_read"]) == (2, 2, 1)
    assert rest.code == 0 and "captured 1 commits, skipped 4 already captured" in rest.stdout
    have = by_sha(store, repo)
    assert set(have) == set(shas) and all(len(ms) == 1 for ms in have.values())
    # oldest first: ids grow with creation, so history order is kept within a run
    first_run = sorted(have[s][0].id for s in shas[3:])
    assert first_run == [have[s][0].id for s in shas[3:]]


def test_backfill_bad_input_is_one_clear_line(cli: CliRunner, make_repo, home, tmp_path
                                              ) -> None:
    repo = make_repo("bad")
    commit(repo, home, "a.txt", "1\n", "only")
    plain = tmp_path / "plain"
    plain.mkdir()

    bad_rev = cli("capture", "git", "--since", "no-such-rev", "--repo", str(repo))
    not_repo = cli("capture", "git", "--repo", str(plain))

    assert bad_rev.code == 2 and "unknown revision 'no-such-rev'" in bad_rev.stderr
    assert not_repo.code == 2 and "not a git work tree" in not_repo.stderr
    for r in (bad_rev, not_repo):
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_concurrent_captures_store_one_memory(cli: CliRunner, make_repo, home, store) -> None:
    repo = make_repo("race")
    sha = commit(repo, home, "a.txt", "1\n", "Raced commit")
    results = []

    def run() -> None:
        results.append(cli("capture", "commit", sha, "--repo", str(repo), "--json"))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=WAIT_S)

    assert [r.code for r in results] == [0, 0], [r.stderr for r in results]
    assert sorted(r.json()["captured"] for r in results) == [0, 1]
    assert len(by_sha(store, repo)[sha]) == 1
