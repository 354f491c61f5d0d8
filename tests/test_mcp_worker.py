"""The stdio server's store worker: a second process that holds the store and the model.

Driven through `python -m memory serve` (what `memctl install` configures clients to launch,
and the entry point's fast path) with the SDK's real client.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import anyio
import pytest
from conftest import memctl_processes
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters
from mcp_types import CallToolResult, Implementation

from memory.launch import stdio_serve_project
from memory.service import Memories

AGENT = Implementation(name="pytest-agent", version="1.0")


def _env(home: Path) -> dict[str, str]:
    return {"MEMCTL_HOME": str(home), "MEMCTL_PROJECT": "worker-test"}


def _workers(home: Path) -> list[int]:
    """Live store-worker processes serving `home`."""
    return memctl_processes(home, b"mcp_server.worker")


def _text(result: CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if getattr(c, "type", "") == "text")


def _wait_until(predicate: object, seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize(("argv", "expected"), [
    (["serve"], (True, None)),
    (["serve", "--project", "api"], (True, "api")),
    (["serve", "-p", "/src/api"], (True, "/src/api")),
    (["serve", "--project=api"], (True, "api")),
    (["serve", "--http"], (False, None)),
    (["serve", "--help"], (False, None)),
    (["serve", "--project"], (False, None)),
    (["serve", "--project", "--http"], (False, None)),
    (["serve", "--project="], (False, None)),
    (["recall", "serve"], (False, None)),
    ([], (False, None)),
])
def test_only_plain_stdio_serve_takes_the_fast_path(argv: list[str],
                                                     expected: tuple[bool, str | None]) -> None:
    assert stdio_serve_project(argv) == expected


def test_tool_calls_run_in_a_worker_that_is_replaced_when_it_dies(home: Path) -> None:
    params = StdioServerParameters(command=sys.executable, args=["-m", "memory", "serve"],
                                   env=_env(home), cwd=str(home.parent))

    async def scenario() -> None:
        async with Client(params, mode="legacy", cache=None, client_info=AGENT,
                          read_timeout_seconds=120) as client:
            stored = await client.call_tool("remember", {
                "content": "Release tags are signed with the team's GPG key", "kind": "convention"})
            assert not stored.is_error, _text(stored)
            first = _workers(home)
            assert len(first) == 1, "the store runs in exactly one worker process"

            os.kill(first[0], signal.SIGKILL)  # a crash in a native library, say
            assert _wait_until(lambda: first[0] not in _workers(home))
            # The call that meets the dead worker may fail, with a clear message; the next
            # one starts a new worker, and the acknowledged memory is still there.
            for attempt in range(2):
                hits = await client.call_tool("recall", {"query": "how are release tags signed"})
                if not hits.is_error:
                    break
                message = _text(hits)
                assert "store process" in message and "Traceback" not in message, message
                assert attempt == 0, message
            assert not hits.is_error, _text(hits)
            assert stored.structured_content is not None and hits.structured_content is not None
            ids = [h["id"] for h in hits.structured_content["hits"]]
            assert stored.structured_content["id"] in ids
            second = _workers(home)
            assert len(second) == 1 and second != first

    anyio.run(scenario)
    assert _wait_until(lambda: not _workers(home), 15), "a worker outlived its server"


def test_a_bad_project_fails_in_one_line_and_leaves_no_worker(home: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "memory", "serve", "--project",
                           str(home / "no-such-dir")], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, env={**os.environ, **_env(home)},
                          timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: project path does not exist")
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert _wait_until(lambda: not _workers(home), 15)


def test_recall_reads_without_lancedb_and_the_first_write_loads_it(home: Path) -> None:
    """Opening the store and recalling use Lance directly (LanceDB's import is on a cold
    server's path to its first answer); writing connects LanceDB on first use."""
    script = textwrap.dedent("""
        import json, sys
        from pathlib import Path
        from mcp_server.runtime import Runtime
        from mcp_server import ops
        rt = Runtime("lazy", Path(sys.argv[1]))
        first = ops.remember(rt, "The cache is warmed at boot", "fact", None, None, 0.5, None,
                             None, None)
        print(json.dumps({"stored": first.id}))
    """)
    proc = subprocess.run([sys.executable, "-c", script, str(home)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    stored = json.loads(proc.stdout)["stored"]

    script = textwrap.dedent("""
        import json, sys
        from pathlib import Path
        from mcp_server.runtime import Runtime
        from mcp_server import ops
        from memory.recall import RecallOptions
        rt = Runtime("lazy", Path(sys.argv[1]))
        # reinforce=False: counting the use is a write (the server does it off the answer path)
        hits = rt.memories().search("when is the cache warmed", RecallOptions(k=5,
                                                                             reinforce=False))
        before = "lancedb" in sys.modules
        ops.remember(rt, "Logs rotate daily", "fact", None, None, 0.5, None, None, None)
        print(json.dumps({"hits": [h.memory.id for h in hits], "before": before,
                          "after": "lancedb" in sys.modules}))
    """)
    proc = subprocess.run([sys.executable, "-c", script, str(home)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["hits"][:1] == [stored]
    assert out["before"] is False and out["after"] is True


def test_loading_threads_can_yield_to_the_server() -> None:
    """The worker's loader threads lower their own priority, and only their own."""
    import threading

    from mcp_server.runtime import Runtime

    seen: dict[str, int] = {}

    def loader() -> None:
        Runtime(load_nice=5)._lower_priority()
        seen["loader"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    thread = threading.Thread(target=loader)
    thread.start()
    thread.join()
    assert seen["loader"] == max(before, 5)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before


def test_the_worker_exits_when_its_server_is_killed(home: Path) -> None:
    """SIGKILL gives the server no chance to clean up: the worker notices its socket close."""
    proc = subprocess.Popen([sys.executable, "-m", "memory", "serve"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env={**os.environ, **_env(home)})
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(json.dumps({
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "t", "version": "0"}}}).encode() + b"\n")
        proc.stdin.flush()
        assert json.loads(proc.stdout.readline())["id"] == 1
        assert _wait_until(lambda: len(_workers(home)) == 1)
        proc.kill()
        proc.wait(30)
        assert _wait_until(lambda: not _workers(home), 15), "the worker outlived its server"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


def test_drain_returns_once_the_counted_uses_are_written(home: Path, mem: Memories) -> None:
    from mcp_server.runtime import Runtime
    from memory.record import utcnow

    made = mem.remember("The cache is warmed at boot", kind="fact").id
    rt = Runtime("test", home)
    assert rt.drain(0)  # nothing counted: at once
    rt.reinforce([made], utcnow())
    assert rt.drain(60)
    assert mem.get(made).access_count == 1
