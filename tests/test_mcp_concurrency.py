"""Ten `memctl` MCP servers on one project, as ten agents would run them.

Every server is a separate process on the same data directory. The workload is fixed in size:
each server stores ROUNDS memories with a unique marker word, and after each acknowledgement a
*different* server must return it by id (`get`) and find it by its marker (`recall`) in a
request sent within a second of the acknowledgement (visibility across processes; how long
the answers take on a busy machine is reported and only loosely bounded). Alongside: all ten
store the same text at once (one memory, nine duplicates) and two update the same memory at
once (one successor, one refusal), and one erases memories for good while the others keep
reading. At the end the table and the full-text index must agree id for id.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters
from mcp_types import CallToolResult, Implementation

from memory.config import paths
from memory.store import MemoryStore

SERVERS = 10
ROUNDS = 3
VISIBLE_WITHIN_S = 1.0
ERASED = 2
PROJECT = "swarm"


@asynccontextmanager
async def stdio_session(home: Path, n: int) -> AsyncIterator[Client]:
    params = StdioServerParameters(command=sys.executable, args=["-m", "mcp_server"],
                                   env={"MEMCTL_HOME": str(home), "MEMCTL_PROJECT": PROJECT})
    async with Client(params, mode="legacy", cache=None, read_timeout_seconds=180,
                      client_info=Implementation(name=f"agent-{n}", version="1")) as client:
        yield client


def structured(result: CallToolResult, errors: list[str], what: str) -> dict[str, Any]:
    if result.is_error or result.structured_content is None:
        errors.append(f"{what}: {result.content}")
        return {}
    return result.structured_content


async def find_elsewhere(other: Client, memory_id: str, marker: str, acked_at: float,
                         errors: list[str], label: str) -> dict[str, tuple[float, float, int]]:
    """For `get` and `recall` on `other`: (when the first request that returned the memory
    was sent, when it was answered, in seconds after the acknowledgement; which attempt). No
    request is sent later than VISIBLE_WITHIN_S after it: the memory then counts as missing."""
    seen: dict[str, tuple[float, float, int]] = {}

    async def poll(what: str, name: str, args: dict[str, Any], key: str) -> None:
        attempt = 0
        while (sent := time.monotonic() - acked_at) <= VISIBLE_WITHIN_S:
            attempt += 1
            out = structured(await other.call_tool(name, args), errors, f"{name} {label}")
            if memory_id in [m["id"] for m in out.get(key, [])]:
                seen[what] = (sent, time.monotonic() - acked_at, attempt)
                return

    async with anyio.create_task_group() as tg:
        tg.start_soon(poll, "get", "get", {"ids": [memory_id]}, "memories")
        tg.start_soon(poll, "recall", "recall", {"query": marker, "k": 3}, "hits")
    return seen


def test_ten_servers_share_one_project(home: Path) -> None:
    errors: list[str] = []
    sent: list[float] = []  # when the request that found it was sent, after the ack
    lags: list[float] = []  # when that answer arrived, after the ack
    first_try = [0]  # memories both get and recall returned on their first request
    acked: list[str] = []

    async def agent(n: int, clients: list[Client]) -> None:
        mine = clients[n]
        for r in range(ROUNDS):
            marker = f"mk{uuid.uuid4().hex[:12]}"
            stored = structured(await mine.call_tool("remember", {
                "content": f"Agent {n} round {r}: build step {marker} runs after the linter",
                "kind": "fact", "tags": [f"agent{n}"]}), errors, f"remember {n}/{r}")
            if not stored:
                continue
            acked_at = time.monotonic()
            acked.append(stored["id"])
            other = clients[(n + 1 + r) % SERVERS]  # never `mine`
            seen = await find_elsewhere(other, stored["id"], marker, acked_at, errors,
                                        f"{n}/{r}")
            if set(seen) != {"get", "recall"}:
                errors.append(f"memory {stored['id']} of server {n} not visible to another "
                              f"server within {VISIBLE_WITHIN_S}s: {seen}")
                continue
            sent.append(max(t[0] for t in seen.values()))
            lags.append(max(t[1] for t in seen.values()))
            first_try[0] += all(t[2] == 1 for t in seen.values())
            # Some reading of its own, as agents do between writes.
            structured(await mine.call_tool("recall", {"query": f"what runs after the linter "
                                                                f"round {r}"}), errors,
                       f"own recall {n}/{r}")

    async def scenario() -> None:
        async with AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(stdio_session(home, n))
                       for n in range(SERVERS)]
            # Warm-up (not timed): every server has opened the store and loaded its model.
            async with anyio.create_task_group() as tg:
                for client in clients:
                    tg.start_soon(client.call_tool, "recall", {"query": "warm up"})

            # All ten store the same convention at the same moment: one memory results.
            same: list[dict[str, Any]] = []

            async def store_same(client: Client) -> None:
                same.append(structured(await client.call_tool("remember", {
                    "content": "Every service logs in JSON with a request id", "kind":
                    "convention"}), errors, "same text"))

            async with anyio.create_task_group() as tg:
                for client in clients:
                    tg.start_soon(store_same, client)
            assert sorted(s.get("status", "?") for s in same) == ["duplicate"] * 9 + ["stored"]
            assert len({s["id"] for s in same}) == 1
            shared = same[0]["id"]

            # Two agents correct the same memory at once: one successor, one clear refusal.
            updates: list[CallToolResult] = []

            async def correct(client: Client, n: int) -> None:
                updates.append(await client.call_tool("update", {
                    "id": shared, "content": f"Every service logs in JSON (fix {n})"}))

            async with anyio.create_task_group() as tg:
                tg.start_soon(correct, clients[0], 0)
                tg.start_soon(correct, clients[1], 1)
            assert sorted(u.is_error for u in updates) == [False, True]
            refusal = next(u for u in updates if u.is_error)
            assert "already replaced" in refusal.content[0].text

            # The mixed workload, all ten at once.
            started = time.monotonic()
            async with anyio.create_task_group() as tg:
                for n in range(SERVERS):
                    tg.start_soon(agent, n, clients)
            elapsed = time.monotonic() - started

            # Every acknowledged memory is there, seen from yet another process.
            for start in range(0, len(acked), 20):
                got = structured(await clients[-1].call_tool("get", {
                    "ids": acked[start:start + 20]}), errors, "final get")
                assert got.get("missing") == [], got.get("missing")
            # Hard erase (compaction, old versions deleted) while the others keep reading:
            # readers must not trip over files that vanish under them.
            stop = anyio.Event()

            async def keep_reading(client: Client) -> None:
                while not stop.is_set():
                    for name, args in (("recall", {"query": "build step after the linter"}),
                                       ("briefing", {"budget": 600})):
                        structured(await client.call_tool(name, args), errors,
                                   f"{name} during erase")

            async def erase() -> None:
                for memory_id in acked[:ERASED]:
                    structured(await clients[0].call_tool("forget", {"id": memory_id,
                                                                     "hard": True}),
                               errors, "hard forget")
                stop.set()

            async with anyio.create_task_group() as tg:
                for client in clients[1:]:
                    tg.start_soon(keep_reading, client)
                tg.start_soon(erase)

            lags.sort()
            print(f"\n{SERVERS} servers x {ROUNDS} rounds in {elapsed:.1f}s; found by the first "
                  f"request {first_try[0]}/{len(sent)} times; answered after the ack: median "
                  f"{lags[len(lags) // 2]:.2f}s, max {lags[-1]:.2f}s")

    anyio.run(scenario)
    assert errors == []
    assert len(acked) == len(sent) == SERVERS * ROUNDS
    assert max(sent) <= VISIBLE_WITHIN_S  # (already checked) visible within the second
    # Answer latency under ten busy processes on two cores: reported, and bounded loosely so
    # a stall (e.g. a recall waiting on other agents' writes) still fails the test.
    assert max(lags) < 3 * VISIBLE_WITHIN_S

    # The store agrees with itself: table and index hold the same ids, links are whole.
    store = MemoryStore(paths(home))
    report = store.doctor(repair=False)
    assert report.clean, report
    rows = store.table.count(f"project = '{PROJECT}'")
    # + the shared convention and its one successor, - the hard-erased ones
    assert rows == SERVERS * ROUNDS + 2 - ERASED
