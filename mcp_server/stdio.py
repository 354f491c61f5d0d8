"""stdio transport that answers `initialize` before the MCP SDK has even been imported.

Importing the SDK costs about a second (its pydantic protocol models), longer than a client
should wait for the handshake. So the process first moves the protocol channel off fds 0/1
(stray output from native libraries then lands on stderr, never on the wire), starts a reader
thread that answers a well-formed `initialize` at once from `info.initialize_result`, and only
then imports and builds the server. The SDK is fed every message, the `initialize` included,
so its session state is exactly as if it had answered; its own (identical) reply to that
`initialize` is dropped. Anything unusual (another first message, odd params) is left to the
SDK.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import queue
import re
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mcp_server import info

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer


class Wire:
    """The client-facing stdout: whole lines, one writer at a time."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._lock = threading.Lock()

    def send(self, data: bytes) -> None:
        with self._lock:
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]


def claim_stdio() -> tuple[int, int]:
    """Take fds 0/1 for the protocol and point them at /dev/null and stderr."""
    wire_in = fcntl.fcntl(0, fcntl.F_DUPFD_CLOEXEC, 3)
    wire_out = fcntl.fcntl(1, fcntl.F_DUPFD_CLOEXEC, 3)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    return wire_in, wire_out


def _valid_initialize(msg: Any) -> bool:
    if not (isinstance(msg, dict) and msg.get("jsonrpc") == "2.0"
            and msg.get("method") == "initialize"):
        return False
    msg_id = msg.get("id")
    if isinstance(msg_id, bool) or not isinstance(msg_id, int | str):
        return False
    params = msg.get("params")
    if not isinstance(params, dict):
        return False
    client = params.get("clientInfo")
    return (isinstance(params.get("protocolVersion"), str)
            and isinstance(params.get("capabilities"), dict)
            and isinstance(client, dict) and isinstance(client.get("name"), str)
            and isinstance(client.get("version"), str))


# Deeper messages are answered here with an error: the SDK's JSON parser gives up near 200
# levels and then drops the message without a reply, leaving the client waiting. No memctl
# argument is nested more than a few levels.
MAX_DEPTH = 64
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}:,]|[^\s\[\]{}:,"]+')


def nesting(line: str) -> tuple[int, object, object]:
    """(maximum depth, top-level "id", top-level "method") of a JSON text, without recursion."""
    if line.count("[") + line.count("{") <= MAX_DEPTH:
        return 0, None, None  # cannot be too deep: skip the scan
    depth = deepest = 0
    found: dict[str, object] = {}
    key: str | None = None
    previous = ""
    for match in _TOKEN.finditer(line):
        tok = match.group(0)
        if tok in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif tok in "]}":
            depth -= 1
        elif tok == ":" and depth == 1 and previous.startswith('"'):
            key = previous[1:-1]
        elif tok not in ",:" and key in ("id", "method") and key not in found:
            with contextlib.suppress(ValueError):
                found[key] = json.loads(tok)
            key = None
        previous = tok
    return deepest, found.get("id"), found.get("method")


def refuse_deep(line: str, wire: Wire) -> bool:
    """Answer (and swallow) a message nested deeper than MAX_DEPTH."""
    depth, msg_id, method = nesting(line)
    if depth <= MAX_DEPTH:
        return False
    if isinstance(msg_id, bool) or not isinstance(msg_id, int | str):
        return True  # a notification (or no usable id): nothing to answer
    text = f"message nested too deeply ({depth} levels; at most {MAX_DEPTH})"
    if method == "tools/call":  # the same shape as any other rejected tool call
        reply: dict[str, object] = {"jsonrpc": "2.0", "id": msg_id, "result": {
            "content": [{"type": "text", "text": f"invalid arguments: {text}"}],
            "isError": True}}
    else:
        reply = {"jsonrpc": "2.0", "id": msg_id, "error": {"code": -32600, "message": text}}
    wire.send(json.dumps(reply).encode() + b"\n")
    return True


# A \uD800-\uDFFF escape without its partner is legal JSON syntax (JavaScript's JSON.stringify
# writes one for a string cut inside an emoji), but the SDK's parser rejects the whole message
# and never answers it. Such escapes become U+FFFD; escaped backslashes and whole pairs are
# matched first so that they are left alone.
_SURROGATE_HINT = re.compile(r"\\u[dD][89a-fA-F]")
_ESCAPES = re.compile(r"\\\\|\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}"
                      r"|(\\u[dD][89a-fA-F][0-9a-fA-F]{2})")


def replace_lone_surrogates(line: str) -> str:
    if not _SURROGATE_HINT.search(line):
        return line
    return _ESCAPES.sub(lambda m: "\\ufffd" if m.group(1) else m.group(0), line)


def refuse_invalid(line: str, wire: Wire) -> bool:
    """Answer (and swallow) a message the SDK would drop without a reply: not JSON (-32700,
    id null, as JSON-RPC asks) or not a JSON-RPC message (-32600, when it has a usable id)."""
    from mcp_types import jsonrpc_message_adapter  # the SDK is loaded once it reads input

    if not line.strip():
        return False
    try:
        jsonrpc_message_adapter.validate_json(line, by_name=False)
        return False
    except ValueError:  # pydantic's ValidationError
        pass
    try:
        msg = json.loads(line)
    except (ValueError, RecursionError):
        error = {"code": -32700, "message": "Parse error: the message is not valid JSON"}
        wire.send(json.dumps({"jsonrpc": "2.0", "id": None, "error": error}).encode() + b"\n")
        return True
    msg_id = msg.get("id") if isinstance(msg, dict) else None
    if not isinstance(msg_id, bool) and isinstance(msg_id, int | str):
        error = {"code": -32600, "message": "Invalid Request: not a JSON-RPC 2.0 message"}
        wire.send(json.dumps({"jsonrpc": "2.0", "id": msg_id, "error": error}).encode() + b"\n")
    return True


class FastStart:
    """Reads the wire into a queue; answers the first message if it is a plain initialize."""

    def __init__(self, wire: Wire) -> None:
        self.wire = wire
        self.inbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self.answered_id: int | str | None = None
        self.closed = threading.Event()

    def read(self, fd: int) -> None:
        first = True
        try:
            with os.fdopen(fd, "rb", closefd=False) as stream:
                for line in stream:
                    if first and line.strip():
                        first = False
                        self._answer(line)
                    self.inbox.put(line)
        except OSError:
            pass
        finally:
            self.inbox.put(None)
            self.closed.set()

    def _answer(self, line: bytes) -> None:
        try:
            msg = json.loads(line)
        except (ValueError, RecursionError):
            return
        if not _valid_initialize(msg):
            return
        reply = {"jsonrpc": "2.0", "id": msg["id"],
                 "result": info.initialize_result(msg["params"]["protocolVersion"])}
        self.answered_id = msg["id"]
        self.wire.send(json.dumps(reply, ensure_ascii=False, separators=(",", ":")).encode()
                       + b"\n")


class InboxFile:
    """What the SDK reads as stdin: lines from the queue, "" at end of input."""

    def __init__(self, fast: FastStart) -> None:
        self._fast = fast
        self._eof = False

    def readline(self) -> str:
        while not self._eof:
            item = self._fast.inbox.get()
            if item is None:
                self._eof = True
                break
            line = replace_lone_surrogates(item.decode("utf-8", "replace"))
            if not (refuse_deep(line, self._fast.wire) or refuse_invalid(line, self._fast.wire)):
                return line
        return ""


class OutboxFile:
    """What the SDK writes as stdout: lines to the wire, minus its reply to the initialize
    that was already answered."""

    def __init__(self, fast: FastStart) -> None:
        self._fast = fast
        self._dropped = False

    def write(self, text: str) -> int:
        if self._fast.answered_id is not None and not self._dropped:
            try:
                msg = json.loads(text)
            except ValueError:
                msg = None
            if (isinstance(msg, dict) and "result" in msg and "method" not in msg
                    and msg.get("id") == self._fast.answered_id):
                self._dropped = True
                return len(text)
        self._fast.wire.send(text.encode("utf-8"))
        return len(text)

    def flush(self) -> None:
        pass


# Once the client has gone, in-flight calls get this long to finish before the process exits
# anyway (the SDK waits for worker threads, which may be waiting for the store to load). A
# write cut short is safe: the table commit is atomic and the index is repaired on next open.
EXIT_GRACE_S = 3.0


def _exit_when_abandoned(fast: FastStart) -> None:
    fast.closed.wait()
    time.sleep(EXIT_GRACE_S)
    os._exit(0)


def run_stdio(build: Callable[[], MCPServer]) -> None:
    """Serve over stdin/stdout until the client closes stdin."""
    wire_in, wire_out = claim_stdio()
    fast = FastStart(Wire(wire_out))
    threading.Thread(target=fast.read, args=(wire_in,), name="memctl-stdin", daemon=True).start()
    threading.Thread(target=_exit_when_abandoned, args=(fast,), name="memctl-exit",
                     daemon=True).start()
    server = build()  # imports the SDK while the client already has its initialize answer

    import anyio
    from mcp.server.stdio import stdio_server

    async def serve() -> None:
        stdin = anyio.wrap_file(InboxFile(fast))  # type: ignore[arg-type]
        stdout = anyio.wrap_file(OutboxFile(fast))  # type: ignore[arg-type]
        async with stdio_server(stdin=stdin, stdout=stdout) as (read_stream, write_stream):
            # MCPServer.run_stdio_async claims the real fds itself; these streams are ours.
            lowlevel = server._lowlevel_server
            await lowlevel.run(read_stream, write_stream,
                               lowlevel.create_initialization_options())

    anyio.run(serve)
