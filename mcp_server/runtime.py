"""The store and the embedding model, loaded in the background so the server answers at once.

Importing LanceDB alone takes seconds and loading the model a few hundred milliseconds, so
neither may happen before `initialize` is answered. `Runtime.start()` begins both in daemon
threads (a dead session's process never waits for them); tools call `memories()`, which waits
for the store. The model is awaited only by the first operation that embeds.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from memory.errors import MemctlError

if TYPE_CHECKING:
    from memory.llm.base import Embedder
    from memory.project import Project
    from memory.service import Memories

LOAD_TIMEOUT_S = 300.0
T = TypeVar("T")


class Backend(Protocol):
    """Where the tools' store operations run: a `Runtime` in this process, or the stdio
    server's store worker process (`mcp_server.worker.Worker`)."""

    process_session: str

    def start(self) -> None: ...

    def run(self, op: Callable[..., T], *args: Any) -> T: ...


class NotReady(MemctlError):
    """The store could not be opened (or is taking far too long)."""


class Runtime:
    def __init__(self, project: str | None = None, home: Path | None = None,
                 load_nice: int = 0) -> None:
        """`load_nice`: niceness of the loading threads (the stdio worker lets the server's
        own start-up go first when the machine is busy)."""
        self._project_arg = project
        self._home = home
        self._load_nice = load_nice
        self._lock = threading.Lock()
        self._started = False
        self._store_ready = threading.Event()
        self._memories: Memories | None = None
        self._error: BaseException | None = None
        self._model: Future[Embedder] = Future()
        # One stdio process serves one session; HTTP sessions carry their own id.
        self.process_session = uuid.uuid4().hex[:16]
        self._touched: queue.SimpleQueue[tuple[list[str], datetime]] = queue.SimpleQueue()
        self._reinforcer: threading.Thread | None = None
        self._unwritten = 0  # reinforce() calls not yet written (or given up on)
        self._written = threading.Condition(self._lock)

    def start(self) -> None:
        """Begin loading (idempotent, returns at once)."""
        with self._lock:
            if self._started:
                return
            self._started = True
        threading.Thread(target=self._load_model, name="memctl-model", daemon=True).start()
        threading.Thread(target=self._load_store, name="memctl-store", daemon=True).start()

    # -- loaders (daemon threads) --------------------------------------------------------
    def _lower_priority(self) -> None:
        if self._load_nice > 0:
            # Linux schedules threads separately: this lowers only the calling thread.
            with contextlib.suppress(OSError, AttributeError):
                tid = threading.get_native_id()
                if os.getpriority(os.PRIO_PROCESS, tid) < self._load_nice:
                    os.setpriority(os.PRIO_PROCESS, tid, self._load_nice)

    def _load_model(self) -> None:
        self._lower_priority()
        try:
            from memory.config import paths
            from memory.llm.convert import ensure_embedder_gguf
            from memory.llm.llama_embedder import LlamaEmbedder  # heavy: llama.cpp

            # One thread: the server embeds one short text at a time, and with two threads
            # ggml's barrier stalls ~0.8 s per call whenever the other core is busy (another
            # agent's server, a test run): measured 5 ms vs 800 ms on a loaded 2-core box.
            model = LlamaEmbedder(ensure_embedder_gguf(paths(self._home).models), n_threads=1)
            self._model.set_result(model)
        except BaseException as exc:  # reported to the first caller that embeds
            self._model.set_exception(exc)

    def _embedder(self) -> Embedder:
        return self._model.result(timeout=LOAD_TIMEOUT_S)

    def _load_store(self) -> None:
        self._lower_priority()
        try:
            from memory.config import paths
            from memory.project import resolve_project
            from memory.service import LazyEmbedder, Memories  # heavy: LanceDB, numpy
            from memory.store import MemoryStore

            project: Project = resolve_project(self._project_arg)
            store = MemoryStore(paths(self._home))
            self._memories = Memories(store, LazyEmbedder(self._embedder), project)
        except BaseException as exc:  # re-raised to every tool call
            self._error = exc
        finally:
            self._store_ready.set()

    # -- for tools -----------------------------------------------------------------------
    def run(self, op: Callable[..., T], *args: Any) -> T:
        """Run a store operation (a function of `mcp_server.ops`) in this process."""
        return op(self, *args)

    def memories(self, timeout: float = LOAD_TIMEOUT_S) -> Memories:
        """The project's memories, waiting for the store to open (blocking: call from a worker
        thread)."""
        self.start()
        if not self._store_ready.wait(timeout):
            raise NotReady("memctl is still opening its store; try again shortly")
        if self._error is not None:
            if isinstance(self._error, MemctlError):
                raise self._error
            raise NotReady(f"memctl could not open its store: {type(self._error).__name__}: "
                           f"{self._error}")
        assert self._memories is not None
        return self._memories

    def reinforce(self, ids: list[str], when: datetime) -> None:
        """Count a recall of `ids` as a use (retention grows with use), off the answer path.

        Reinforcing is a write, and writes queue on the store's cross-process lock: done inline
        it would make every recall wait for other agents' writes. A daemon thread applies them
        in batches instead (one table update per batch, not per recall); the process drains
        them before it exits (`drain`).
        """
        if not ids:
            return
        with self._lock:
            self._unwritten += 1
            if self._reinforcer is None:
                self._reinforcer = threading.Thread(target=self._reinforce_loop,
                                                    name="memctl-reinforce", daemon=True)
                self._reinforcer.start()
        self._touched.put((list(ids), when))

    def _reinforce_loop(self) -> None:
        while True:
            batch = [self._touched.get()]
            while True:
                try:
                    batch.append(self._touched.get_nowait())
                except queue.Empty:
                    break
            try:
                store = self.memories().store
                for ids, when in batch:
                    store.touch(ids, when)
                store.flush_touches()  # one batched write, here off the answer path
            except Exception:  # best effort: a lost use count is not worth failing over
                pass
            with self._lock:
                self._unwritten -= len(batch)
                self._written.notify_all()

    def drain(self, timeout: float) -> bool:
        """Wait until the uses counted so far are written, at most `timeout` seconds (the
        process is about to exit); whether they were."""
        with self._lock:
            return self._written.wait_for(lambda: not self._unwritten, max(0.0, timeout))
