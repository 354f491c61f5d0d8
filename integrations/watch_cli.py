"""`memctl watch`: keep doc memories in sync with the project's knowledge files."""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

# Only typer at module level: `memctl --help` imports this module.
if TYPE_CHECKING:
    from rich.progress import Progress

    from integrations.docs import Scope
    from integrations.docsync import SyncResult, Totals
    from memory.service import Memories


def watch(
    paths: Annotated[list[Path] | None, typer.Argument(
        help="More files to keep in sync, or folders whose markdown files to keep in sync, "
             "besides the defaults. Must be inside the project.", show_default=False)] = None,
    once: Annotated[bool, typer.Option("--once", help="Sync once and exit (for scripts, cron "
                    "and CI) instead of watching.")] = False,
    debounce: Annotated[float, typer.Option(help="Seconds a file must stay unchanged before "
                        "it is synced (editors save in several steps).")] = 0.5,
    project: Annotated[str | None, typer.Option("--project", "-p", help="The project's folder. "
                       "Default: the git root of the working directory, else the working "
                       "directory.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print errors only.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object per line "
                       "(events: sync, ready, summary).")] = False,
) -> None:
    """Keep `doc` memories in sync with the project's knowledge files.

    Watched: CLAUDE.md and AGENTS.md (any depth), README*, docs/ and doc/ markdown, ADRs.

    ADRs are markdown files under any adr/, adrs/ or decisions/ folder.

    Each section (split at markdown headings) is one memory, titled "path — Heading > Sub".

    An edited section supersedes its memory; a removed section or file is archived.

    Skipped: files git ignores, binary or non-UTF-8 files, files over 1 MB, links outside.

    First a full sync, then each file once it has been quiet for --debounce s; Ctrl-C stops.
    """
    from memory.errors import InputError

    if not 0 <= debounce <= 60:
        raise InputError("--debounce must be between 0 and 60 seconds")
    root = _root(project)
    printer = _Printer(quiet, as_json)
    scope = _scope(root, paths or [], printer)

    from memory.app import open_memories

    mem = open_memories(str(root))
    if once:
        raise typer.Exit(_once(mem, root, scope, printer))
    raise typer.Exit(_watch(mem, root, scope, debounce, printer))


def _root(project: str | None) -> Path:
    from memory.errors import InputError
    from memory.project import git_root

    base = Path(project).expanduser() if project else Path.cwd()
    if not base.is_dir():
        raise InputError(f"--project must be a folder: {project}")
    return git_root(base) or base.resolve()


def _scope(root: Path, paths: list[Path], printer: _Printer) -> Scope:
    from integrations.docs import Scope

    extra: set[str] = set()
    for path in paths:
        full = (Path.cwd() / path.expanduser()).resolve()
        if not full.is_relative_to(root):
            printer.note(f"skipped {path}: outside the project ({root})")
            continue
        rel = full.relative_to(root).as_posix()
        extra.add("" if rel == "." else rel)
    return Scope(frozenset(extra))


class _Printer:
    """Output shared by the main thread and the watcher's worker: one line per event."""

    def __init__(self, quiet: bool, as_json: bool) -> None:
        self.quiet = quiet
        self.as_json = as_json
        self._lock = threading.Lock()

    def _write(self, stream: Any, line: str) -> None:
        with self._lock:
            stream.write(line + "\n")
            stream.flush()  # a pipe is block-buffered: a reader must see each line now

    def json(self, value: dict[str, Any]) -> None:
        if not self.quiet:
            self._write(sys.stdout, json.dumps(value, ensure_ascii=False))

    def note(self, message: str) -> None:
        if not self.quiet:
            self._write(sys.stderr, message)

    def error(self, message: str) -> None:
        self._write(sys.stderr, f"error: {message}")

    def result(self, r: SyncResult) -> None:
        if r.error:
            self.error(f"{r.path}: {r.error}")
        if self.as_json:
            self.json(r.to_public())
        elif r.error:
            return
        elif r.changed and not self.quiet:
            self._write(sys.stdout, r.summary())
        else:
            self.note(r.summary())


def _progress(printer: _Printer) -> Progress:  # shown on a terminal only
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    console = Console(stderr=True)
    return Progress(TextColumn("syncing knowledge files"), BarColumn(), MofNCompleteColumn(),
                    console=console, transient=True,
                    disable=printer.quiet or not console.is_terminal)


def _once(mem: Memories, root: Path, scope: Scope, printer: _Printer) -> int:
    from integrations.docsync import Totals, scan

    totals = Totals()
    with _progress(printer) as bar:
        task = bar.add_task("sync", total=None)
        for result in scan(mem, root, scope,
                           progress=lambda done, total: bar.update(task, completed=done,
                                                                   total=total)):
            totals.add(result)
            if result.worth_telling:
                printer.result(result)
    if printer.as_json:
        printer.json({"event": "summary", "root": str(root), **totals.to_public()})
    else:
        printer.note(f"synced {totals.summary()}")
    return 1 if totals.errors else 0


def _watch(mem: Memories, root: Path, scope: Scope, debounce: float, printer: _Printer
           ) -> int:
    from integrations.watch import Watcher

    bar = _progress(printer)
    task = bar.add_task("sync", total=None)
    bar.start()

    def ready(totals: Totals) -> None:
        bar.stop()
        if printer.as_json:
            printer.json({"event": "ready", "root": str(root), **totals.to_public()})
        else:
            printer.note(f"watching {root} ({totals.summary()}); Ctrl-C to stop")

    watcher = Watcher(mem, root, scope, debounce=debounce, on_result=printer.result,
                      on_ready=ready, on_error=printer.error,
                      progress=lambda done, total: bar.update(task, completed=done,
                                                              total=total))
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        if stop.is_set():  # a second Ctrl-C: leave without waiting for the last sync
            raise KeyboardInterrupt
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        watcher.start()
        while watcher.alive and not stop.wait(0.2):
            pass
    finally:
        watcher.stop()
        bar.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
    if watcher.failed:
        return 1
    printer.note("stopped")
    return 0
