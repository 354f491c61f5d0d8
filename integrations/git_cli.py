"""`memctl hooks ...` and `memctl capture ...`: git auto-capture commands."""

from __future__ import annotations

import typer

hooks_app = typer.Typer(help="Install or remove the git hooks that capture commits.",
                        no_args_is_help=True)
capture_app = typer.Typer(help="Capture knowledge from elsewhere (git history).",
                          no_args_is_help=True)
