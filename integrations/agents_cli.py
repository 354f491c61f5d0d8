"""`memctl install|uninstall claude|cursor` and `memctl hook claude EVENT`."""

from __future__ import annotations

import typer

install_app = typer.Typer(help="Connect memctl to an agent (MCP server, hooks, rules).",
                          no_args_is_help=True)
uninstall_app = typer.Typer(help="Undo `memctl install`.", no_args_is_help=True)
hook_app = typer.Typer(help="Entry points that agents' hooks call (reads JSON on stdin).",
                       no_args_is_help=True)
