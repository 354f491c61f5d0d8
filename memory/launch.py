"""The `memctl` entry point, with a fast path for the stdio server.

A plain `memctl serve` (what MCP clients launch) starts its store worker at once and skips
the CLI (typer and rich: about 0.3 s of imports), because an MCP client waits for the first
recall: the worker needs about 1.3 s of imports before it can answer one, and the server about
1.5 s for the MCP SDK. Anything but the plain stdio forms below goes through the CLI.
"""

from __future__ import annotations

import sys


def stdio_serve_project(argv: list[str]) -> tuple[bool, str | None]:
    """(True, project) for `serve`, `serve --project P`, `serve -p P`, `serve --project=P`;
    (False, None) for anything else."""
    if argv[:1] != ["serve"]:
        return False, None
    rest = argv[1:]
    if not rest:
        return True, None
    if len(rest) == 2 and rest[0] in ("--project", "-p") and not rest[1].startswith("-"):
        return True, rest[1]
    if len(rest) == 1 and rest[0].startswith("--project=") and len(rest[0]) > 10:
        return True, rest[0].split("=", 1)[1]
    return False, None


def main() -> None:
    from memory.exiting import run_and_exit

    run_and_exit(_main)


def _main() -> None:
    stdio, project = stdio_serve_project(sys.argv[1:])
    if stdio:
        from mcp_server import __main__ as server_main
        from mcp_server.worker import prestart

        prestart(project)
        server_main.main([f"--project={project}"] if project is not None else [])
        return
    from memory.cli import main as cli_main

    cli_main()
