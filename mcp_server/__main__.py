"""`python -m mcp_server [--http] [--host H] [--port P] [--project P] [--allow-remote]`."""

from __future__ import annotations

import argparse
import sys

from mcp_server import serve
from memory.errors import InputError, MemctlError


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mcp_server",
                                     description="Serve memctl memories over MCP.")
    parser.add_argument("--http", action="store_true",
                        help="Streamable HTTP (bearer token required) instead of stdio.")
    parser.add_argument("--host", default="127.0.0.1", help="HTTP bind address (loopback).")
    parser.add_argument("--port", type=int, default=8765, help="HTTP port (default 8765).")
    parser.add_argument("--project", default=None,
                        help="Project name or path (default: $MEMCTL_PROJECT, else git root).")
    parser.add_argument("--allow-remote", action="store_true",
                        help="Allow binding a non-loopback address.")
    args = parser.parse_args(argv)
    try:
        serve("http" if args.http else "stdio", host=args.host, port=args.port,
              project=args.project, allow_remote=args.allow_remote)
    except MemctlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2 if isinstance(exc, InputError) else 1)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
