"""`memctl bench startup`: how fast a cold server answers, measured like a client sees it.

A real MCP client (the SDK's, over stdio) starts the server as a subprocess and times, from
the moment before the spawn: the `initialize` reply, the `tools/list` reply and the first
`recall` answer (on a store that holds a few memories, so recall has to open the store and
load the model). Then it reads the server's resident memory from /proc.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH_PROJECT = "memctl-bench-startup"
SEED = (
    ("convention", "Python code is formatted with ruff, line length 100"),
    ("decision", "LanceDB is the source of truth; the Tantivy index is rebuilt from it"),
    ("bug", "Uploads retried forever when the token expired; fixed by capping retries at 5"),
    ("fact", "The MCP server lives in mcp_server/ and starts with `memctl serve`"),
    ("episode", "Moved the CLI to typer and added --json to every command"),
)


def _seed(home: Path) -> None:
    """Make sure the bench project holds a few memories (idempotent: dedup skips repeats)."""
    from mcp_server.runtime import Runtime

    mem = Runtime(BENCH_PROJECT, home).memories()
    for kind, text in SEED:
        mem.remember(text, kind=kind, source="user")


def _server_command() -> list[str]:
    """What `memctl install claude|cursor` configures clients to launch."""
    return [sys.executable, "-m", "memory", "serve"]


def _proc_table() -> dict[str, tuple[str, bytes]]:
    """pid -> (parent pid, command line) of every process we can read."""
    table: dict[str, tuple[str, bytes]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
                table[entry.name] = (ppid, (entry / "cmdline").read_bytes())
            except (OSError, IndexError):
                continue
    return table


def _rss_mb(pid: str) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return 0.0


def _server_rss_mb(command: list[str]) -> float | None:
    """VmRSS of our child process running `command` plus its descendants (the store worker),
    found through /proc because the client does not expose its pid."""
    table = _proc_table()
    wanted = "\0".join(command[1:]).encode()
    roots = [pid for pid, (ppid, cmd) in table.items()
             if ppid == str(os.getpid()) and wanted in cmd]
    if not roots:
        return None
    family, frontier = set(roots), list(roots)
    while frontier:
        parent = frontier.pop()
        kids = [pid for pid, (ppid, _) in table.items() if ppid == parent]
        family.update(kids)
        frontier.extend(kids)
    return round(sum(_rss_mb(pid) for pid in family), 1)


def bench_startup(home: Path | None = None) -> dict[str, Any]:
    """Cold-start timings of the stdio server: {initialize_s, tools_list_s, first_recall_s,
    rss_mb}. `home`: a data directory (default: a temporary one, removed afterwards)."""
    import anyio
    from mcp.client import Client
    from mcp.client.stdio import StdioServerParameters
    from mcp_types import Implementation

    from memory.config import paths

    temp = None
    if home is None:
        temp = Path(tempfile.mkdtemp(prefix="memctl-bench-"))
        home = temp / "home"
    home = paths(home).home
    try:
        _seed(home)  # also converts the model if this data directory has none yet
        command = _server_command()
        env = {"MEMCTL_HOME": str(home), "MEMCTL_PROJECT": BENCH_PROJECT}
        params = StdioServerParameters(command=command[0], args=command[1:], env=env)
        out: dict[str, Any] = {}

        async def run() -> None:
            started = time.perf_counter()
            async with Client(params, mode="legacy", cache=None, read_timeout_seconds=300,
                              client_info=Implementation(name="memctl-bench",
                                                         version="1")) as client:
                out["initialize_s"] = round(time.perf_counter() - started, 3)
                await client.list_tools()
                out["tools_list_s"] = round(time.perf_counter() - started, 3)
                result = await client.call_tool("recall", {"query": "how is the code formatted"})
                out["first_recall_s"] = round(time.perf_counter() - started, 3)
                if result.is_error:
                    raise RuntimeError(f"recall failed: {result.content}")
                out["hits"] = len((result.structured_content or {}).get("hits", []))
                out["rss_mb"] = _server_rss_mb(command)

        anyio.run(run)
        return out
    finally:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)


if __name__ == "__main__":
    import json

    print(json.dumps(bench_startup(Path(sys.argv[1]) if len(sys.argv) > 1 else None)))
