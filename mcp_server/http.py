"""Streamable HTTP on loopback, behind a bearer token and an Origin check.

A local HTTP port is reachable by every process on the machine and, through DNS rebinding or
a malicious page, by browsers. So: bind loopback only (unless --allow-remote), require
`Authorization: Bearer <token>` where the token is generated once and kept owner-only in the
data directory, refuse requests whose Origin is not a localhost origin (403), and let the
SDK's transport security check the Host header as well.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
import secrets
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from memory.errors import InputError

TOKEN_FILE = "http-token"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
MCP_PATH = "/mcp"
LOCAL_HOSTNAMES = ("localhost", "127.0.0.1", "::1")


def ensure_token(home: Path) -> str:
    """The server's bearer token, created on first use with 0600 permissions."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / TOKEN_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)  # someone loosened it: a shared token is no token
        token = path.read_text(encoding="ascii").strip()
        if len(token) >= 32:
            return token
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC, 0o600)  # empty or damaged: replace
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(token + "\n")
    return token


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, allow_remote: bool) -> None:
    if not allow_remote and not is_loopback(host):
        raise InputError(f"refusing to serve on {host}: it is reachable from other machines. "
                         "Use a loopback address (127.0.0.1) or pass --allow-remote if you "
                         "really mean it (the bearer token is then all that protects memories)")


def local_origin(origin: str) -> bool:
    """Origins allowed to call the server: none (non-browser clients) or localhost pages."""
    try:
        parts = urlsplit(origin)
        hostname = parts.hostname
        _ = parts.port  # a malformed port raises
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and hostname in LOCAL_HOSTNAMES


class Guard:
    """ASGI middleware: Origin first (403), then the bearer token (401)."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self._token = token.encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        origin = headers.get("origin")
        if origin is not None and not local_origin(origin):
            await _reply(send, 403, "forbidden origin: only localhost pages may call memctl")
            return
        auth = headers.get("authorization", "")
        scheme, _, presented = auth.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(),
                                                                 self._token):
            await _reply(send, 401, "missing or wrong bearer token (see the http-token file in "
                         "the memctl data directory)",
                         [(b"www-authenticate", b'Bearer realm="memctl"')])
            return
        await self.app(scope, receive, send)


async def _reply(send: Any, status: int, message: str,
                 extra: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *(extra or [])]})
    await send({"type": "http.response.body", "body": body})


def connection_help(url: str, token: str) -> str:
    header = f"Authorization: Bearer {token}"
    cursor = {"mcpServers": {"memctl": {"url": url, "headers": {"Authorization":
                                                                 f"Bearer {token}"}}}}
    return "\n".join([
        f"memctl MCP server (streamable HTTP) on {url}",
        f"  every request needs the header:  {header}",
        "  Claude Code:",
        f"    claude mcp add --transport http memctl {url} --header \"{header}\"",
        "  Cursor (~/.cursor/mcp.json or .cursor/mcp.json):",
        "    " + json.dumps(cursor),
        "  (the token lives in the data directory's http-token file, mode 0600)",
    ])


def build_app(server: Any, host: str, port: int, token: str, allow_remote: bool) -> Any:
    from mcp.server.transport_security import TransportSecuritySettings

    hosts = [f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"]
    origins = [f"{s}://{h}{p}" for s in ("http", "https")
               for h in ("127.0.0.1", "localhost", "[::1]") for p in ("", ":*")]
    # With --allow-remote the Host header is whatever name the machine is reached by; the
    # token and the Origin check (in Guard) still apply.
    security = TransportSecuritySettings(enable_dns_rebinding_protection=not allow_remote,
                                         allowed_hosts=hosts, allowed_origins=origins)
    app = server.streamable_http_app(streamable_http_path=MCP_PATH, transport_security=security,
                                     host=host)
    return Guard(app, token)


def run_http(build: Callable[[], Any], home: Path, host: str = DEFAULT_HOST,
             port: int = DEFAULT_PORT, allow_remote: bool = False) -> None:
    """Serve `build()`'s MCPServer until interrupted. The port is taken before the (slow)
    build, so a busy port fails at once, and before anyone is told where to connect."""
    import uvicorn

    check_bind(host, allow_remote)
    token = ensure_token(home)
    sock = _bind(host, port)
    app = build_app(build(), host, port, token, allow_remote)
    shown = f"[{host}]" if ":" in host else host
    print(connection_help(f"http://{shown}:{port}{MCP_PATH}", token), file=sys.stderr,
          flush=True)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise InputError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(128)
    return sock
