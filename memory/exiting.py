"""Ending a memctl process: every exit step Python takes, then no interpreter finalisation.

LanceDB's Rust runtime threads take the GIL to finish a call (a future's result, a
reference drop) and can still be releasing it when the main thread starts finalising the
interpreter; CPython then aborts ("PyGILState_Release: thread state must be current when
releasing", exit code 134) after the command's output. It hit 2 runs in 53 of a short
script doing 40 recalls (a core dump showed the LanceDB thread), none in 45 after this.
Finalisation does nothing a memctl process needs, so the process ends right after the steps
that matter.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
from collections.abc import Callable
from typing import NoReturn


def run_and_exit(entry: Callable[[], object]) -> NoReturn:
    """Run `entry` (a command-line entry point), then end the process with its exit code."""
    try:
        entry()
        code = 0
    except SystemExit as exc:
        code = exit_code(exc.code)
    finish(code)


def exit_code(code: object) -> int:
    """The process exit code `sys.exit(code)` gives (a message is printed, as Python does)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def finish(code: int) -> NoReturn:
    """What interpreter shutdown does first, in its order (wait for non-daemon threads, run
    the atexit handlers: pending usage counts are written there, flush output), then exit."""
    shutdown = getattr(threading, "_shutdown", None)  # CPython's own first exit step
    if shutdown is not None:
        shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
