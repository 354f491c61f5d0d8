"""The file watcher on real stores: syncing files into `doc` memories, a real watchdog
observer in a thread, and the real `memctl watch` in a subprocess on a real git repo."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import unicodedata
from collections.abc import Callable
from pathlib import Path

import pytest

from integrations.docs import Scope
from integrations.docsync import archive_file, current, scan, sync_file
from integrations.watch import Watcher
from memory.config import paths
from memory.project import resolve_project
from memory.recall import RecallOptions
from memory.record import Memory
from memory.service import Memories
from memory.store import MemoryStore

GUIDE = """Intro to the guide.

# Install

Run `make install` to set up the zanzibar toolchain.

# Usage

Call `memctl watch` from the project root.

# Faq

Nothing asked yet.
"""


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def watched(mem: Memories, rel: str | None = None) -> list[Memory]:
    """Every watch-made doc memory (any status), optionally of one file."""
    rows = mem.store.table.rows(f"{mem._where(False)} AND kind = 'doc' AND source = 'watch'")
    return [m for m in rows if rel is None or m.files == [rel]]


def titles(rows: list[Memory]) -> set[str | None]:
    return {m.title for m in rows}


def by_title(rows: list[Memory]) -> dict[str | None, Memory]:
    return {m.title: m for m in rows}


def wait_for(check: Callable[[], object], timeout: float, what: str) -> None:
    """Poll `check` until it returns True; its other return values describe the state."""
    deadline = time.monotonic() + timeout
    while True:
        state = check()
        if state is True:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}; last state: {state}")
        time.sleep(0.2)


# -- syncing one file -----------------------------------------------------------------------
def test_sync_stores_edits_archives_and_is_idempotent(mem: Memories, tmp_path: Path) -> None:
    root = tmp_path / "proj"
    guide = root / "docs/guide.md"
    write(guide, GUIDE)
    first = sync_file(mem, root, "docs/guide.md", Scope())
    assert len(first.stored) == 4 and not first.updated and not first.archived
    rows = current(mem, "docs/guide.md")
    assert titles(rows) == {"docs/guide.md", "docs/guide.md — Install", "docs/guide.md — Usage",
                            "docs/guide.md — Faq"}
    install = by_title(rows)["docs/guide.md — Install"]
    assert install.kind == "doc" and install.source == "watch"
    assert install.files == ["docs/guide.md"]
    assert install.text.startswith("docs/guide.md — Install\n\nRun `make install`")

    # Syncing an unchanged file changes nothing, not even a row.
    count = mem.store.table.count()
    again = sync_file(mem, root, "docs/guide.md", Scope())
    assert not again.changed and again.unchanged == 4
    assert mem.store.table.count() == count

    # Editing one section supersedes that section only.
    write(guide, GUIDE.replace("zanzibar toolchain", "quokka toolchain"))
    edit = sync_file(mem, root, "docs/guide.md", Scope())
    assert edit.stored == [] and edit.archived == [] and edit.unchanged == 3
    assert len(edit.updated) == 1 and edit.updated[0][0] == install.id
    successor = mem.get(edit.updated[0][1])
    assert successor.supersedes == install.id and successor.title == install.title
    assert mem.get(install.id).superseded_by == successor.id
    hidden = [h.memory.id for h in mem.search("zanzibar toolchain", RecallOptions(k=20))]
    assert install.id not in hidden
    shown = [h.memory.id for h in mem.search("zanzibar toolchain",
                                              RecallOptions(k=20, include_superseded=True))]
    assert install.id in shown
    assert successor.id in [h.memory.id for h in mem.search("quokka toolchain")]

    # Removing a section archives it; renaming a heading over the same body supersedes.
    faq = by_title(current(mem, "docs/guide.md"))["docs/guide.md — Faq"]
    usage = by_title(current(mem, "docs/guide.md"))["docs/guide.md — Usage"]
    text = GUIDE.replace("zanzibar", "quokka").split("# Faq")[0].replace("# Usage", "# Using")
    write(guide, text)
    cut = sync_file(mem, root, "docs/guide.md", Scope())
    assert cut.archived == [faq.id] and mem.get(faq.id).status == "archived"
    assert [old for old, _ in cut.updated] == [usage.id] and not cut.stored
    assert titles(current(mem, "docs/guide.md")) == {
        "docs/guide.md", "docs/guide.md — Install", "docs/guide.md — Using"}

    # Deleting the file archives all that is left of it.
    guide.unlink()
    gone = sync_file(mem, root, "docs/guide.md", Scope())
    assert len(gone.archived) == 3 and current(mem, "docs/guide.md") == []
    assert not sync_file(mem, root, "docs/guide.md", Scope()).changed


def test_unreadable_and_aliased_files_are_skipped(mem: Memories, tmp_path: Path) -> None:
    root = tmp_path / "proj"
    write(root / "AGENTS.md", "# Rules\n\nAlways run the linter.\n")
    write(root / "docs/x.md", "# X\n\nreadable for now\n")
    (root / "CLAUDE.md").symlink_to(root / "AGENTS.md")
    assert sync_file(mem, root, "AGENTS.md", Scope()).stored
    alias = sync_file(mem, root, "CLAUDE.md", Scope())
    assert alias.skipped == "the same file as AGENTS.md" and not alias.stored
    assert len(sync_file(mem, root, "docs/x.md", Scope()).stored) == 1
    assert current(mem, "AGENTS.md")[0].importance == pytest.approx(0.7)  # agent instructions

    (root / "docs/x.md").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00")
    binary = sync_file(mem, root, "docs/x.md", Scope())
    assert binary.skipped == "binary file" and len(binary.archived) == 1
    assert current(mem, "docs/x.md") == []


def test_scan_syncs_everything_and_archives_what_is_gone(mem: Memories, tmp_path: Path
                                                         ) -> None:
    root = tmp_path / "proj"
    write(root / "README.md", "# Proj\n\nA project.\n")
    write(root / "docs/a.md", "# A\n\nalpha\n")
    write(root / "notes/n.md", "# N\n\nnote\n")
    write(root / "docs/it's.md", "# Quote\n\nA name that needs quoting in a filter.\n")
    write(root / "src/main.py", "print('not knowledge')\n")
    extra = Scope(frozenset({"notes"}))
    results = {r.path: r for r in scan(mem, root, extra)}
    assert set(results) == {"README.md", "docs/a.md", "docs/it's.md", "notes/n.md"}
    assert all(len(r.stored) == 1 for r in results.values())
    assert not any(r.changed for r in scan(mem, root, extra))  # idempotent

    (root / "docs/a.md").unlink()
    results = {r.path: r for r in scan(mem, root, Scope())}  # notes/ no longer in scope
    assert len(results["docs/a.md"].archived) == 1
    assert "notes/n.md" not in results  # still there, just not watched now: left alone
    assert len(current(mem, "notes/n.md")) == 1

    (root / "notes/n.md").unlink()
    results = {r.path: r for r in scan(mem, root, Scope())}
    assert len(results["notes/n.md"].archived) == 1
    assert not archive_file(mem, root.name).changed

    # A name in NFD (as macOS writes it) is stored in NFC and still matches its file.
    nfd = unicodedata.normalize("NFD", "docs/über.md")
    write(root / nfd, "# Ü\n\numlaut body\n")
    assert [len(r.stored) for r in scan(mem, root, Scope()) if r.changed] == [1]
    assert not any(r.changed for r in scan(mem, root, Scope()))
    assert current(mem, unicodedata.normalize("NFC", nfd))[0].files == ["docs/über.md"]


# -- a real observer in a thread ------------------------------------------------------------
def test_watcher_thread_follows_folders_and_stops_cleanly(mem: Memories, home: Path,
                                                           tmp_path: Path) -> None:
    root = tmp_path / "proj"
    write(root / "docs/sub/a.md", "# A\n\nalpha body\n")
    reader = Memories(MemoryStore(paths(home)), mem.embedder, mem.project)
    ready = threading.Event()
    seen: list[str] = []
    watcher = Watcher(mem, root, Scope(), debounce=0.2, on_ready=lambda totals: ready.set(),
                      on_result=lambda r: seen.append(r.summary()), on_error=seen.append)
    watcher.start()
    try:
        assert ready.wait(120), "the initial scan did not finish"
        assert len(current(reader, "docs/sub/a.md")) == 1
        # A folder renamed: its files come and go without events of their own.
        os.rename(root / "docs/sub", root / "docs/moved")
        # A folder moved in from outside the project, files included.
        write(tmp_path / "staging/b.md", "# B\n\nbeta body\n")
        os.rename(tmp_path / "staging", root / "docs/imported")

        def state() -> object:
            now = {rel: len(current(reader, rel)) for rel in
                   ("docs/sub/a.md", "docs/moved/a.md", "docs/imported/b.md")}
            return now == {"docs/sub/a.md": 0, "docs/moved/a.md": 1,
                           "docs/imported/b.md": 1} or now
        wait_for(state, 60, "the folder changes to be synced")
    finally:
        watcher.stop()
    assert not watcher.alive and not watcher.failed
    assert not any(line.startswith("the watcher stopped") for line in seen), seen


# -- the real command ------------------------------------------------------------------------
def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEMCTL_", "XDG_"))}
    env.update({"MEMCTL_HOME": str(home), "NO_COLOR": "1", "COLUMNS": "200"})
    return env


def _collect(stream, into: list[str]) -> threading.Thread:
    def run() -> None:
        for line in iter(stream.readline, b""):
            into.append(line.decode("utf-8", "replace"))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _events(lines: list[str]) -> list[dict]:
    return [json.loads(line) for line in list(lines) if line.startswith("{")]


def test_memctl_watch_follows_edits_in_a_git_repo(home: Path, make_repo, embedder) -> None:
    repo = make_repo("watched")
    write(repo / ".gitignore", "docs/private.md\n")
    write(repo / "README.md", "# Proj\n\nIntro.\n\n## Build\n\nRun make to build.\n")
    write(repo / "CLAUDE.md", "# Rules\n\nUse tabs.\n")
    write(repo / "docs/guide.md", GUIDE)
    write(repo / "docs/old.md", "# Old\n\nold body\n")
    write(repo / "docs/gone.md", "# Gone\n\ngone body\n")
    write(repo / "docs/later.md", "# Later\n\nlater body\n")
    write(repo / "src/app.py", "print('code is not knowledge')\n")
    proc = subprocess.Popen([sys.executable, "-m", "memory.cli", "watch", "--json",
                             "--debounce", "1"], cwd=repo, env=_env(home),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out: list[str] = []
    err: list[str] = []
    readers = [_collect(proc.stdout, out), _collect(proc.stderr, err)]
    try:
        wait_for(lambda: any(e["event"] == "ready" for e in _events(out))
                 or (proc.poll() is not None and f"exited: {''.join(err)}"),
                 180, "the watcher to be ready")
        ready = next(e for e in _events(out) if e["event"] == "ready")
        assert ready["sections"] == 10 and ready["new"] == 10 and ready["errors"] == 0

        mem = Memories(MemoryStore(paths(home)), lambda: embedder, resolve_project(str(repo)))
        before = {m.title: m for m in watched(mem)}
        write(repo / "docs/private.md", "# Private\n\ngitignored notes\n")
        (repo / "docs/x.md").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
        # An atomic save: a temporary file renamed over the target.
        write(repo / "docs/.guide.md.tmp", GUIDE.replace("zanzibar", "quokka"))
        os.replace(repo / "docs/.guide.md.tmp", repo / "docs/guide.md")
        # A vim-style save: the original renamed to a backup, a new file written.
        os.rename(repo / "README.md", repo / "README.md~")
        write(repo / "README.md", "# Proj\n\nIntro.\n\n## Build\n\nRun ninja to build.\n")
        with open(repo / "CLAUDE.md", "a", encoding="utf-8") as f:  # an in-place edit
            f.write("\n## Tests\n\nRun pytest before pushing.\n")
        os.rename(repo / "docs/old.md", repo / "docs/new.md")
        (repo / "docs/gone.md").unlink()
        with open(repo / ".gitignore", "a", encoding="utf-8") as f:
            f.write("docs/later.md\n")

        expected = {
            "README.md": {"README.md — Proj", "README.md — Proj > Build"},
            "CLAUDE.md": {"CLAUDE.md — Rules", "CLAUDE.md — Rules > Tests"},
            "docs/guide.md": {"docs/guide.md", "docs/guide.md — Install",
                              "docs/guide.md — Usage", "docs/guide.md — Faq"},
            "docs/new.md": {"docs/new.md — Old"},
            "docs/old.md": set(), "docs/gone.md": set(), "docs/later.md": set(),
        }

        def state() -> object:
            now = {rel: titles(current(mem, rel)) for rel in expected}
            build = by_title(current(mem, "README.md")).get("README.md — Proj > Build")
            install = by_title(current(mem, "docs/guide.md")).get("docs/guide.md — Install")
            done = (now == expected and build is not None and "ninja" in build.text
                    and install is not None and "quokka" in install.text)
            return done or now
        wait_for(state, 120, "the edits to be synced")
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=120)
        for reader in readers:
            reader.join(timeout=10)
    stderr = "".join(err)
    assert code == 0, stderr
    assert "Traceback" not in stderr and "stopped" in stderr

    # Each save ended as one successor of the edited section: nothing archived by the way.
    for rel, title, word in (("README.md", "README.md — Proj > Build", "ninja"),
                             ("docs/guide.md", "docs/guide.md — Install", "quokka")):
        rows = watched(mem, rel)
        assert not [m for m in rows if m.status == "archived"], rel
        old = before[title]
        assert [m.id for m in rows if m.superseded_by] == [old.id]
        new = mem.get(mem.get(old.id).superseded_by)
        assert new.supersedes == old.id and word in new.text
    unchanged = ("CLAUDE.md — Rules", "docs/guide.md — Usage", "README.md — Proj")
    assert all(by_title(current(mem, t.split(" — ")[0]))[t].id == before[t].id
               for t in unchanged)
    for rel in ("docs/old.md", "docs/gone.md", "docs/later.md"):
        assert [m.status for m in watched(mem, rel)] == ["archived"], rel
    for rel in ("docs/private.md", "docs/x.md", "README.md~", "src/app.py"):
        assert watched(mem, rel) == [], rel
    skipped = [e for e in _events(out) if e["event"] == "sync" and e["path"] == "docs/x.md"]
    assert skipped and skipped[0]["skipped"] == "binary file"
    assert not [e for e in _events(out) if e.get("error")]


def test_memctl_watch_once_and_bad_input(cli, make_repo, tmp_path: Path) -> None:
    repo = make_repo("once")
    write(repo / "AGENTS.md", "# Agents\n\nKeep functions small.\n")
    write(repo / "notes/plan.md", "# Plan\n\nShip the watcher.\n")
    outside = tmp_path / "outside.md"
    write(outside, "# Elsewhere\n")
    result = cli("watch", "--once", "--json", "notes", str(outside), cwd=repo)
    assert result.code == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert {e["path"] for e in events if e["event"] == "sync"} == {"AGENTS.md", "notes/plan.md"}
    assert events[-1]["event"] == "summary" and events[-1]["new"] == 2
    assert f"skipped {outside}: outside the project" in result.stderr

    for args in (["--debounce", "-1"], ["--project", str(tmp_path / "missing")]):
        bad = cli("watch", "--once", *args, cwd=repo)
        assert bad.code == 2 and bad.stderr.startswith("error:"), bad.stderr
        assert "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
