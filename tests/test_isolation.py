"""Isolation: two projects, two agents, one store. No recall, briefing, get, resource, write
or export of one project returns or touches the other's memories, whatever the projects are
called; the HTTP transport binds loopback and refuses requests without the token.

The projects are two real git repositories with the same basename (`a/app`, `b/app`), so a
key built from names alone would collide. Each agent is a real `python -m mcp_server`
process started in its repository, as Claude Code or Cursor would start it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from conftest import CliRunner, git
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import Implementation
from test_mcp_server import ACCEPT, INIT, TIMEOUT, _free_port, failed, ok, text_of

from memory.config import paths
from memory.project import resolve_project
from memory.service import LazyEmbedder, Memories
from memory.store import MemoryStore

# What each project's agent writes: the same topics in different words, so that a leak would
# rank near the top of the other project's recall.
NOTES = {
    "a": [("convention", "Deploys of app A go through the blue pipeline on Mondays"),
          ("decision", "App A stores sessions in Redis because restarts must keep logins"),
          ("bug", "App A's deploy failed when the blue pipeline cache was stale; purge it")],
    "b": [("convention", "Deploys of app B go through the green pipeline on Fridays"),
          ("decision", "App B stores sessions in Postgres because it already runs one"),
          ("bug", "App B's deploy failed when the green pipeline lost its runner; restart it")],
}
QUERY = "how do deploys and the pipeline work, where are sessions stored, what failed"


@pytest.fixture
def repos(make_repo: Callable[[str], Path]) -> dict[str, Path]:
    repos = {"a": make_repo("a/app"), "b": make_repo("b/app")}
    for repo in repos.values():
        (repo / "src").mkdir()
        (repo / "src" / "main.py").write_text("print('hi')\n")
        git(repo, "add", ".")
        git(repo, "commit", "-qm", "init")
    return repos


@asynccontextmanager
async def agent(home: Path, repo: Path, name: str) -> AsyncIterator[Client]:
    """An agent's own server, started in its repository (the project is its git root)."""
    params = StdioServerParameters(command=sys.executable, args=["-m", "mcp_server"],
                                   env={"MEMCTL_HOME": str(home)}, cwd=str(repo / "src"))
    async with Client(params, mode="legacy", cache=None,
                      client_info=Implementation(name=name, version="1"),
                      read_timeout_seconds=TIMEOUT) as client:
        yield client


def test_two_projects_two_agents_see_only_their_own(home: Path, repos: dict[str, Path],
                                                   cli: CliRunner, tmp_path: Path) -> None:
    ids: dict[str, list[str]] = {}
    before: dict[str, dict[str, Any]] = {}

    async def scenario() -> None:
        async with agent(home, repos["a"], "agent-a") as a, agent(home, repos["b"],
                                                                   "agent-b") as b:
            clients = {"a": a, "b": b}
            for side, client in clients.items():
                ids[side] = [ok(await client.call_tool("remember", {
                    "content": text, "kind": kind, "files": ["src/main.py"]}))["id"]
                    for kind, text in NOTES[side]]
            for side, client in clients.items():
                got = ok(await client.call_tool("get", {"ids": ids[side]}))["memories"]
                before[side] = {m["id"]: m for m in got}

            for side, client in clients.items():
                other = "b" if side == "a" else "a"
                mine, theirs = set(ids[side]), set(ids[other])
                leaked_text = [text for _, text in NOTES[other]]

                def clean(text: str, theirs: set[str] = theirs,
                          leaked_text: list[str] = leaked_text) -> None:
                    assert not any(i in text for i in theirs), text
                    assert not any(t[:30] in text for t in leaked_text), text

                # recall: all of mine, none of theirs, even asked in their words
                for query in (QUERY, NOTES[other][0][1], "green pipeline Fridays Postgres",
                              "blue pipeline Mondays Redis"):
                    res = await client.call_tool("recall", {"query": query, "k": 50,
                                                            "files": ["src/main.py"]})
                    hits = {h["id"] for h in ok(res)["hits"]}
                    assert hits <= mine, (side, query)
                    clean(text_of(res))
                res = await client.call_tool("recall", {"query": QUERY, "k": 50})
                assert {h["id"] for h in ok(res)["hits"]} == mine

                # briefing (tool and resource)
                res = await client.call_tool("briefing", {"files": ["src/main.py"]})
                assert {e["id"] for e in ok(res)["entries"]} == mine
                assert ok(res)["project"] == "app"
                clean(text_of(res))
                page = (await client.read_resource("memory://briefing")).contents[0].text
                clean(page)
                for own in mine:
                    assert own in page

                # get and resources by the other's ids
                failed(await client.call_tool("get", {"ids": sorted(theirs)}), "none of these")
                mixed = ok(await client.call_tool("get", {"ids": [*ids[side], *ids[other]]}))
                assert {m["id"] for m in mixed["memories"]} == mine
                assert set(mixed["missing"]) == theirs
                for foreign in theirs:
                    with pytest.raises(MCPError, match="no memory"):
                        await client.read_resource(f"memory://{foreign}")
                listed = (await client.list_resources()).resources
                assert [str(r.uri) for r in listed] == ["memory://briefing"]
                page = (await client.read_resource(f"memory://{ids[side][0]}")).contents[0].text
                clean(page)

                # writes aimed at the other's memories
                target = ids[other][0]
                failed(await client.call_tool("update", {"id": target, "content": "hijack"}),
                       "no memory")
                failed(await client.call_tool("feedback", {"id": target, "verdict": "wrong"}),
                       "no memory")
                failed(await client.call_tool("forget", {"id": target, "hard": True}),
                       "no memory")
                failed(await client.call_tool("remember", {"content": "Hijack by supersede",
                                                           "supersedes": target}), "no memory")

            # ... and the other's memories are exactly as they were.
            for side, client in clients.items():
                got = ok(await client.call_tool("get", {"ids": ids[side]}))["memories"]
                for m in got:
                    old = before[side][m["id"]]
                    for key in ("text", "status", "current", "trust", "superseded_by",
                                "valid_to", "history"):
                        assert m[key] == old[key], (side, key)

    anyio.run(scenario)

    # The CLI: export by path, by working directory, and through a symlink.
    a_key, b_key = str(repos["a"].resolve()), str(repos["b"].resolve())
    exported_a = [json.loads(line) for line in
                  cli("export", "--project", str(repos["a"])).stdout.splitlines()]
    assert sorted(r["id"] for r in exported_a) == sorted(ids["a"])
    assert {r["project"] for r in exported_a} == {a_key}
    exported_b = cli("export", cwd=repos["b"] / "src").stdout
    assert sorted(json.loads(line)["id"] for line in exported_b.splitlines()) == sorted(ids["b"])
    link = tmp_path / "link-to-a"
    link.symlink_to(repos["a"] / "src")
    hits = cli("search", QUERY, "-k", "50", "--project", str(link), "--json").json()
    assert {h["id"] for h in hits} == set(ids["a"])
    # A project name that reads like a filter is a name like any other: it sees nothing.
    assert cli("search", QUERY, "--project", "x' OR project != '", "--json").json() == []

    # Importing B's export into A copies it under fresh ids; B's memories are untouched.
    report = cli("import", "-", "--project", str(repos["a"]), "--json", input=exported_b).json()
    assert report == {"imported": 3, "skipped": 0, "errors": []}
    store = MemoryStore(paths(home))
    a_rows = store.table.rows(f"project = '{a_key}'")
    b_rows = store.table.rows(f"project = '{b_key}'")
    assert len(a_rows) == 6 and sorted(m.id for m in b_rows) == sorted(ids["b"])
    assert not set(ids["b"]) & {m.id for m in a_rows}
    for m in b_rows:
        old = before["b"][m.id]
        assert (m.text, m.status, m.superseded_by, round(m.trust, 4)) == (
            old["text"], old["status"], old["superseded_by"], old["trust"])


# -- HTTP --------------------------------------------------------------------------------------

def _listening(port: int) -> list[str]:
    """Local addresses of sockets listening on `port` (from /proc/net/tcp and tcp6)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            address, hex_port = fields[1].rsplit(":", 1)
            if int(hex_port, 16) == port and fields[3] == "0A":  # 0A: LISTEN
                found.append(address)
    return found


@pytest.fixture
def seeded(home: Path, repos: dict[str, Path], embedder) -> dict[str, list[str]]:
    store = MemoryStore(paths(home))
    out = {}
    for side in ("a", "b"):
        mem = Memories(store, LazyEmbedder(lambda: embedder), resolve_project(str(repos[side])))
        out[side] = [mem.remember(text, kind=kind).id for kind, text in NOTES[side]]
    return out


@pytest.fixture
def http_a(home: Path, repos: dict[str, Path], tmp_path: Path) -> Iterator[tuple[str, int]]:
    """`memctl serve --http` for project A, on the default host."""
    port = _free_port()
    log = tmp_path / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEMCTL_", "XDG_"))}
    with log.open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "memory.cli", "serve", "--http",
                                 "--port", str(port), "--project", str(repos["a"])],
                                env={**env, "MEMCTL_HOME": str(home)}, stderr=err,
                                stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + TIMEOUT
        while "every request needs the header" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "HTTP server did not start"
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/mcp", port
        assert proc.poll() is None  # still serving after everything
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(15)


def test_http_binds_loopback_and_serves_only_its_project(
        home: Path, seeded: dict[str, list[str]], http_a: tuple[str, int]) -> None:
    url, port = http_a
    # Bound to 127.0.0.1 only (0100007F in /proc's little-endian hex), not to every address.
    assert _listening(port) == ["0100007F"]
    token = (home / "http-token").read_text().strip()

    async def scenario() -> None:
        async with httpx2.AsyncClient() as raw:
            for headers, status in (({}, 401), ({"Authorization": "Bearer " + "x" * 43}, 401),
                                    ({"Authorization": f"Bearer {token}",
                                      "Origin": "https://attacker.example"}, 403)):
                r = await raw.post(url, json=INIT, headers={**ACCEPT, **headers})
                assert r.status_code == status, headers
                assert "Traceback" not in r.text
            # A lone surrogate escape or broken JSON gets a JSON-RPC parse error (over stdio
            # the surrogate becomes U+FFFD instead: see test_bad_input).
            auth = {**ACCEPT, "Authorization": f"Bearer {token}"}
            for body in (json.dumps(INIT).replace('"raw"', '"raw \\ud800"').encode(),
                         b'{"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {'):
                r = await raw.post(url, content=body, headers=auth)
                assert r.status_code == 400 and r.json()["error"]["code"] == -32700, r.text
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"},
                                      timeout=httpx2.Timeout(30, read=TIMEOUT)) as http, Client(
                streamable_http_client(url, http_client=http), mode="legacy",
                cache=None) as client:
            hits = ok(await client.call_tool("recall", {"query": QUERY, "k": 50}))["hits"]
            assert {h["id"] for h in hits} == set(seeded["a"])
            brief = ok(await client.call_tool("briefing", {}))
            assert {e["id"] for e in brief["entries"]} == set(seeded["a"])
            failed(await client.call_tool("get", {"ids": seeded["b"]}), "none of these")
            with pytest.raises(MCPError, match="no memory"):
                await client.read_resource(f"memory://{seeded['b'][0]}")
            failed(await client.call_tool("forget", {"id": seeded["b"][0], "hard": True}),
                   "no memory")

    anyio.run(scenario)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "example.com"])
def test_http_refuses_non_loopback_hosts_without_allow_remote(home: Path, host: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "mcp_server", "--http", "--host", host,
                           "--port", str(_free_port())], env={**os.environ,
                                                              "MEMCTL_HOME": str(home)},
                          capture_output=True, timeout=TIMEOUT)
    assert proc.returncode == 2
    message = proc.stderr.decode()
    assert f"refusing to serve on {host}" in message and "--allow-remote" in message
    assert "Traceback" not in message and len(message.strip().splitlines()) == 1
