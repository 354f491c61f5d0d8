"""The stdio server's store and models, in a second process.

One Python process cannot overlap imports: the MCP SDK's (about 1.4 s of CPU) and LanceDB's
and llama.cpp's (about 1.6 s) would run one after the other before the first recall. So
`memctl serve` starts this worker first, and each process imports on its own core: the worker
opens the store and loads the model while the server imports the SDK and answers the
handshake. Tool calls cross a socket as (request id, name of an `ops` function, arguments);
results, and `MemctlError`s, come back pickled (the socket is an anonymous pair between the
server and its own child: nothing else can write to it).

The worker's stdin is /dev/null and its stdout is the server's stderr, so nothing it or a
native library prints can reach the protocol. It exits when the server goes away (end of its
socket), after the calls in flight have had `EXIT_GRACE_S` to finish. If it dies (a crash in a
native library), the calls waiting on it fail with a clear error and the next call starts a
new worker.

Run as `python -m mcp_server.worker --fd N [--project=P] [--home=DIR]`.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import pickle
import socket
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, TypeVar

from mcp_server.runtime import LOAD_TIMEOUT_S, NotReady

T = TypeVar("T")
OPS_MODULE = "mcp_server.ops"
EXIT_GRACE_S = 3.0
LOAD_NICE = 5
# Tool calls the worker runs at once (the SDK sends them from its own thread pool).
WORKER_THREADS = 8
# A call waits at most this long for its answer: the store may first take a while to open.
CALL_TIMEOUT_S = LOAD_TIMEOUT_S + 60.0


class Worker:
    """The server side: starts the worker process and forwards `run(op, *args)` to it."""

    def __init__(self, project: str | None = None, home: Path | None = None) -> None:
        self._project = project
        self._home = home
        self.process_session = uuid.uuid4().hex[:16]  # one stdio process, one session
        self._lock = threading.Lock()  # guards the fields below and sends on the socket
        self._ids = itertools.count(1)
        self._pending: dict[int, Future[Any]] = {}
        self._conn: Connection | None = None
        self._spawn()

    def start(self) -> None:
        """Nothing to do: the worker began loading when it was spawned."""

    def serves(self, project: str | None, home: Path | None) -> bool:
        return (project, home) == (self._project, self._home)

    def close(self) -> None:
        """Let the worker go (it exits once its socket closes)."""
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def run(self, op: Callable[..., T], *args: Any) -> T:
        if op.__module__ != OPS_MODULE:
            raise ValueError(f"only {OPS_MODULE} functions run in the worker, not {op!r}")
        future: Future[Any] = Future()
        with self._lock:
            if self._conn is None:
                self._spawn()
            conn = self._conn
            assert conn is not None
            request_id = next(self._ids)
            self._pending[request_id] = future
            try:
                conn.send((request_id, op.__name__, args))
            except (OSError, ValueError) as exc:  # the worker is gone: next call respawns
                self._pending.pop(request_id, None)
                self._conn = None
                raise NotReady(f"memctl's store process is not running ({exc}); "
                               "the next call starts a new one") from exc
        try:
            return future.result(timeout=CALL_TIMEOUT_S)  # type: ignore[no-any-return]
        except FutureTimeout:
            with self._lock:
                self._pending.pop(request_id, None)
            raise NotReady("memctl's store process did not answer in time") from None

    # -- internals -----------------------------------------------------------------------
    def _spawn(self) -> None:
        """Start a worker (caller holds the lock, or is __init__)."""
        ours, theirs = socket.socketpair()
        command = [sys.executable, "-m", "mcp_server.worker", "--fd", str(theirs.fileno())]
        if self._project is not None:
            command.append(f"--project={self._project}")
        if self._home is not None:
            command.append(f"--home={self._home}")
        try:
            proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=sys.stderr,
                                    pass_fds=(theirs.fileno(),), close_fds=True)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        conn = Connection(ours.detach())
        self._conn = conn
        threading.Thread(target=self._read, args=(conn, proc),
                         name="memctl-worker-reader", daemon=True).start()

    def _read(self, conn: Connection, proc: subprocess.Popen[bytes]) -> None:
        """Hand each answer to the call waiting for it; fail them all if the worker dies."""
        while True:
            try:
                request_id, ok, payload = conn.recv()
            except (EOFError, OSError, pickle.UnpicklingError, ValueError, TypeError):
                break
            with self._lock:
                future = self._pending.pop(request_id, None)
            if future is None:
                continue  # its caller timed out
            if ok:
                future.set_result(payload)
            else:
                future.set_exception(payload)
        conn.close()
        with self._lock:
            if self._conn is conn:
                self._conn = None
            waiting, self._pending = self._pending, {}
        try:
            code: int | None = proc.wait(1.0)
        except subprocess.TimeoutExpired:
            code = None
        how = f"exited with code {code}" if code is not None and code >= 0 else (
            f"was killed by signal {-code}" if code is not None else "closed its socket")
        for future in waiting.values():
            future.set_exception(NotReady(f"memctl's store process {how} (its log is the "
                                          "server's stderr); the next call starts a new one"))


_prestarted: Worker | None = None


def prestart(project: str | None) -> None:
    """Spawn the worker for `project` now; `take` hands it to the server (memory.launch)."""
    global _prestarted
    try:
        _prestarted = Worker(project)
    except OSError:
        _prestarted = None  # the server will try again, and say why if it fails


def take(project: str | None, home: Path | None) -> Worker:
    """The prestarted worker if it serves `project` in the default home, else a new one."""
    global _prestarted
    worker, _prestarted = _prestarted, None
    if worker is not None and worker.serves(project, home):
        return worker
    if worker is not None:
        worker.close()
    return Worker(project, home)


def _reply(conn: Connection, lock: threading.Lock, request_id: int, ok: bool,
           payload: Any) -> None:
    try:
        data = pickle.dumps((request_id, ok, payload))
    except Exception as exc:  # an unpicklable result or exception: say what it was
        data = pickle.dumps((request_id, False, RuntimeError(
            f"{type(payload).__name__}: {payload} (could not be sent back: {exc})")))
    # OSError: the server is gone; the main loop is about to see it.
    with lock, contextlib.suppress(OSError):
        conn.send_bytes(data)


def _handle(runtime: Any, conn: Connection, lock: threading.Lock, request_id: int,
            name: str, args: tuple[Any, ...]) -> None:
    from memory.errors import MemctlError

    try:
        from mcp_server import ops

        op = getattr(ops, name)
        result = op(runtime, *args)
    except MemctlError as exc:
        _reply(conn, lock, request_id, False, exc)
    except Exception as exc:
        from memory.llm.base import EmbedderError

        if not isinstance(exc, EmbedderError):  # a bug: the traceback goes to the log
            traceback.print_exc(file=sys.stderr)
        _reply(conn, lock, request_id, False, exc)
    else:
        _reply(conn, lock, request_id, True, result)


def _warm_writer(runtime: Any) -> None:
    """Connect LanceDB (about 0.5 s of imports; reads do not need it) in the background."""

    def warm() -> None:
        with contextlib.suppress(Exception):  # the first write will say what is wrong
            runtime.memories().store.table.connect()

    threading.Thread(target=warm, name="memctl-warm", daemon=True).start()


def serve_worker(fd: int, project: str | None, home: Path | None) -> None:
    """The worker's main loop: answer requests until the server closes the socket."""
    from mcp_server.runtime import Runtime

    conn = Connection(fd)
    # Loading runs at a lower priority: on a busy machine the server's own start-up (the
    # handshake, tools/list) goes first; on an idle one each process has its core anyway.
    runtime = Runtime(project, home, load_nice=LOAD_NICE)
    runtime.start()  # imports and opens the store, loads the model: in the background
    lock = threading.Lock()
    pool = ThreadPoolExecutor(WORKER_THREADS, thread_name_prefix="memctl-op")
    first = True
    while True:
        try:
            request_id, name, args = conn.recv()
        except (EOFError, OSError):
            break
        call = pool.submit(_handle, runtime, conn, lock, request_id, name, args)
        if first:  # once the first answer is out, load LanceDB for the first write
            call.add_done_callback(lambda _: _warm_writer(runtime))
            first = False
    # The server is gone: let calls in flight (a write, say) and the usage counts of the
    # last recalls finish, then exit even if one is stuck (the pool's threads are not
    # daemons; a dead session's process must not stay).
    deadline = time.monotonic() + EXIT_GRACE_S
    finished = threading.Event()

    def wind_down() -> None:
        pool.shutdown(wait=True)
        runtime.drain(deadline - time.monotonic())
        finished.set()

    threading.Thread(target=wind_down, daemon=True).start()
    finished.wait(EXIT_GRACE_S)
    sys.stderr.flush()
    os._exit(0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mcp_server.worker",
                                     description="memctl's store process for `memctl serve`.")
    parser.add_argument("--fd", type=int, required=True, help="Socket to the server.")
    parser.add_argument("--project", default=None)
    parser.add_argument("--home", type=Path, default=None)
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        serve_worker(args.fd, args.project, args.home)
    except KeyboardInterrupt:
        os._exit(130)
    except BaseException:
        traceback.print_exc()
        print(f"memctl worker: failed after {time.monotonic() - started:.1f} s", file=sys.stderr)
        os._exit(1)


if __name__ == "__main__":
    main()
