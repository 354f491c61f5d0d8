"""memctl's MCP server: seven tools, two resources, one prompt, over stdio or loopback HTTP.

`serve()` is the entry point (`memctl serve`, `python -m mcp_server`). Importing this package
is cheap: the SDK, LanceDB and the model load only when serving starts. Over stdio the store
and the model live in a worker process (`mcp_server.worker`) that loads them while this one
imports the SDK; over HTTP everything stays in this process.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from mcp_server.runtime import Backend

__all__ = ["serve"]

# How long in-flight tool calls may take to finish once the server loop has ended.
EXIT_GRACE_S = 3.0


def serve(transport: str = "stdio", host: str = "127.0.0.1", port: int = 8765,
          project: str | None = None, allow_remote: bool = False,
          home: Path | None = None) -> None:
    """Serve this project's memories until the client goes away (stdio) or Ctrl-C (HTTP).

    transport: "stdio" or "http" (streamable HTTP on `host`:`port`, bearer token required).
    project: name or path; default $MEMCTL_PROJECT, else the git root of the cwd.
    allow_remote: permit a non-loopback `host`.
    """
    from mcp_server.runtime import Runtime
    from memory.config import paths
    from memory.project import resolve_project

    resolve_project(project)  # a bad --project fails now, with its one-line message
    if transport in ("http", "streamable-http"):
        from mcp_server.http import check_bind, run_http

        check_bind(host, allow_remote)  # before anything slow
        runtime = Runtime(project, home)
        runtime.start()  # no handshake to hurry here: open the store while the SDK loads
        run_http(lambda: _build(runtime), paths(home).home, host, port, allow_remote)
        runtime.drain(EXIT_GRACE_S)  # the last recalls' usage counts
        return
    if transport != "stdio":
        from memory.errors import InputError

        raise InputError(f"unknown transport {transport!r}; use stdio or http")

    from mcp_server.stdio import run_stdio

    backend: Backend
    try:
        from mcp_server import worker

        # First (if `memctl` did not already), so that the store and the model load on the
        # other core while the SDK imports.
        backend = worker.take(project, home)
    except OSError as exc:  # no second process: everything in this one, only slower
        print(f"memctl: store process unavailable ({exc}); serving in-process",
              file=sys.stderr)
        backend = Runtime(project, home)
    code = 0
    try:
        run_stdio(lambda: _build(backend))
    except KeyboardInterrupt:
        code = 130
    except BaseException:  # report, then still exit promptly
        traceback.print_exc()
        code = 1
    _exit_after_grace(code, backend)


def _build(runtime: Backend) -> MCPServer:
    from mcp_server.server import build_server  # the SDK import happens here

    return build_server(runtime)


def _exit_after_grace(code: int, backend: Backend) -> None:
    """The client is gone: let in-flight writes finish, then exit even if some worker thread
    is still blocked (a dead session's process must not linger)."""
    from mcp_server.runtime import Runtime

    deadline = time.monotonic() + EXIT_GRACE_S
    for thread in threading.enumerate():
        if thread is threading.current_thread() or thread.daemon:
            continue
        thread.join(max(0.0, deadline - time.monotonic()))
    if isinstance(backend, Runtime):  # served in-process: the last recalls' usage counts
        backend.drain(deadline - time.monotonic())
    sys.stderr.flush()
    os._exit(code)
