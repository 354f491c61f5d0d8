"""Watch a project's files with watchdog and sync its knowledge files as they change.

watchdog's thread only classifies each event and queues it; one worker thread does all the
syncing, so no event is lost while a sync waits on the embedder, and the store has a single
writer. A path is synced once it has been quiet for the debounce period, from what is on
disk at that moment, whatever the events were: an editor's atomic save (write a temporary
file, rename it over the target) or delete-then-create ends as one update of the file.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import (
    EVENT_TYPE_CLOSED,
    EVENT_TYPE_CREATED,
    EVENT_TYPE_DELETED,
    EVENT_TYPE_MODIFIED,
    EVENT_TYPE_MOVED,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from integrations import docs
from integrations.docsync import SyncResult, Totals, attempt, scan, sync_file
from memory.errors import MemctlError
from memory.service import Memories

DEFAULT_DEBOUNCE_S = 0.5
# A file that never goes quiet (a log someone appends to) is still synced this often.
MAX_DELAY_FACTOR = 10
FILE_EVENTS = frozenset({EVENT_TYPE_CREATED, EVENT_TYPE_MODIFIED, EVENT_TYPE_DELETED,
                         EVENT_TYPE_MOVED, EVENT_TYPE_CLOSED})
# A folder's "modified" only echoes changes to its entries, which come as their own events.
DIR_EVENTS = frozenset({EVENT_TYPE_CREATED, EVENT_TYPE_DELETED, EVENT_TYPE_MOVED})


@dataclass(frozen=True)
class Change:
    """Something to sync: a file, or a folder to rescan (its files may have come or gone
    without their own events, e.g. a folder moved in)."""

    kind: str  # "file" | "folder"
    rel: str  # POSIX path relative to the root; "" is the whole project


def classify(rel: str, is_directory: bool, scope: docs.Scope) -> Change | None:
    """What an event on `rel` asks for; None for the paths a watcher ignores: .git/ and
    node_modules/, editors' temporary files, anything that is not a knowledge file."""
    if rel in ("", ".") or rel == ".." or rel.startswith("../"):
        return None
    parts = rel.split("/")
    if any(p in docs.NEVER_DIRS for p in parts):
        return None
    if is_directory:
        return Change("folder", rel)
    if parts[-1] == ".gitignore":  # what is ignored below it may have changed
        return Change("folder", "/".join(parts[:-1]))
    return Change("file", rel) if scope.covers(rel) else None


def _covering(folders: Iterable[str]) -> list[str]:
    """The folders not inside another one of them ("" covers everything)."""
    chosen: list[str] = []
    for f in sorted(set(folders), key=len):
        if not any(c == "" or f == c or f.startswith(c + "/") for c in chosen):
            chosen.append(f)
    return chosen


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: Watcher) -> None:
        self.watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        allowed = DIR_EVENTS if event.is_directory else FILE_EVENTS
        if event.event_type not in allowed:
            return
        for path in (event.src_path, event.dest_path):
            if path:
                self.watcher.notice(os.fsdecode(path), event.is_directory)


class Watcher:
    """Runs until `stop()`: an initial scan of the project, then a sync per quiet path."""

    def __init__(self, mem: Memories, root: Path, scope: docs.Scope, *,
                 debounce: float = DEFAULT_DEBOUNCE_S,
                 on_result: Callable[[SyncResult], None] = lambda r: None,
                 on_ready: Callable[[Totals], None] = lambda t: None,
                 on_error: Callable[[str], None] = lambda message: None,
                 progress: Callable[[int, int], None] | None = None) -> None:
        self.mem = mem
        self.root = root.resolve()
        self.scope = scope
        self.debounce = debounce
        self.on_result = on_result
        self.on_ready = on_ready
        self.on_error = on_error
        self.progress = progress
        self.failed = False
        self._queue: queue.Queue[Change | None] = queue.Queue()
        self._stopping = threading.Event()
        self._observer = Observer()
        self._worker = threading.Thread(target=self._run, name="memctl-watch", daemon=True)

    # -- the event thread ----------------------------------------------------------------
    def notice(self, path: str, is_directory: bool) -> None:
        rel = Path(os.path.relpath(path, self.root)).as_posix()
        change = classify(rel, is_directory, self.scope)
        if change is not None:
            self._queue.put(change)

    # -- control -------------------------------------------------------------------------
    def start(self) -> None:
        # Watch first, then scan: a change made during the scan is queued, not missed.
        self._observer.schedule(_Handler(self), str(self.root), recursive=True)
        try:
            self._observer.start()
        except OSError as exc:  # typically the inotify watch limit on a huge tree
            raise MemctlError(f"cannot watch {self.root}: {exc.strerror or exc} (on Linux, "
                              "see sysctl fs.inotify.max_user_watches)") from None
        self._worker.start()

    @property
    def alive(self) -> bool:
        return self._worker.is_alive()

    def stop(self) -> None:
        """Stop watching, sync what is still pending, and wait for the worker."""
        self._stopping.set()
        if self._observer.is_alive():
            self._observer.stop()
            self._observer.join()
        self._queue.put(None)
        if self._worker.is_alive():
            self._worker.join()

    # -- the worker thread ---------------------------------------------------------------
    def _run(self) -> None:
        try:
            totals = Totals()
            for result in scan(self.mem, self.root, self.scope,
                               should_stop=self._stopping.is_set, progress=self.progress):
                totals.add(result)
                self._tell(result)
            if self._stopping.is_set():
                return
            self.on_ready(totals)
            self._loop()
        except Exception as exc:  # a broken store: say so; the command exits non-zero
            self.failed = True
            self.on_error(f"the watcher stopped: {type(exc).__name__}: {exc}"[:500])

    def _loop(self) -> None:
        pending: dict[Change, tuple[float, float]] = {}  # change -> first and last seen
        longest = self.debounce * MAX_DELAY_FACTOR

        def due_at(first: float, last: float) -> float:
            return min(last + self.debounce, first + longest)

        while True:
            wait = None
            if pending:
                wait = max(0.0, min(due_at(*t) for t in pending.values()) - time.monotonic())
            stopping = False
            items: list[Change | None] = []
            try:
                items.append(self._queue.get(timeout=wait))
                while True:  # take everything already queued before deciding
                    items.append(self._queue.get_nowait())
            except queue.Empty:
                pass
            for item in items:
                if item is None:
                    stopping = True
                else:
                    now = time.monotonic()
                    pending[item] = (pending.get(item, (now, now))[0], now)
            now = time.monotonic()
            due = [c for c, t in pending.items() if stopping or now >= due_at(*t)]
            for change in due:
                del pending[change]
            if due:
                try:
                    self._sync(due)
                except Exception as exc:  # e.g. the store briefly unreadable: keep watching
                    self.on_error(f"sync failed: {type(exc).__name__}: {exc}"[:500])
            if stopping:
                return

    def _sync(self, changes: list[Change]) -> None:
        folders = _covering(c.rel for c in changes if c.kind == "folder")
        for folder in folders:
            for result in scan(self.mem, self.root, self.scope, prefix=folder):
                self._tell(result)
        files = sorted(c.rel for c in changes if c.kind == "file" and not any(
            f == "" or c.rel.startswith(f + "/") for f in folders))
        skip = docs.ignored(self.root, files)
        for rel in files:
            self._tell(attempt(rel, lambda r=rel: sync_file(self.mem, self.root, r,
                                                              self.scope, r in skip)))

    def _tell(self, result: SyncResult) -> None:
        if result.worth_telling:
            self.on_result(result)
