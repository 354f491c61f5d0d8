"""`memctl install|uninstall claude|cursor` and `memctl hook claude [EVENT]`."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from integrations.jsonconfig import Change

install_app = typer.Typer(help="Connect memctl to an agent (MCP server, hooks, rules).",
                          no_args_is_help=True)
uninstall_app = typer.Typer(help="Undo `memctl install`.", no_args_is_help=True)
hook_app = typer.Typer(help="Entry points that agents' hooks call (reads JSON on stdin).",
                       no_args_is_help=True)

ScopeOpt = Annotated[str, typer.Option(
    "--scope", "-s", help="project: this repository's config files (shared with the repo); "
    "user: your user-level config, for every project.")]
RepoOpt = Annotated[str | None, typer.Option(
    "--repo", help="The project directory (default: the git root of the working directory).")]
DryRunOpt = Annotated[bool, typer.Option(
    "--dry-run", help="Show what would change (a unified diff) and write nothing.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def _report(agent: str, scope: str, changes: list[Change], dry_run: bool, as_json: bool,
            undo: bool) -> None:
    from integrations.jsonconfig import apply

    if not dry_run:
        apply(changes)
    if as_json:
        out = {"agent": agent, "scope": scope, "dry_run": dry_run,
               "changes": [{**c.to_public(), **({"diff": c.diff()} if dry_run else {})}
                           for c in changes]}
        sys.stdout.write(json.dumps(out, ensure_ascii=False) + "\n")
        return
    verbs = {"create": "would create" if dry_run else "created",
             "update": "would update" if dry_run else "updated",
             "delete": "would delete" if dry_run else "deleted",
             "unchanged": "unchanged"}
    for c in changes:
        if dry_run and c.changed:
            sys.stdout.write(c.diff())
        print(f"{verbs[c.action]}: {c.path}")
    if dry_run:
        print("dry run: nothing was written")
    elif not any(c.changed for c in changes):
        print("nothing to do: " + ("memctl is not installed there" if undo
                                   else "already installed"))


@install_app.command("claude", help=(
    "Register memctl's MCP server and hooks with Claude Code.\n\n"
    "Project scope writes .mcp.json and .claude/settings.json in the repository; user scope "
    "writes ~/.claude.json and ~/.claude/settings.json. Existing servers, hooks and settings "
    "are kept; running it again changes nothing; `memctl uninstall claude` reverses it.\n\n"
    "Hooks: SessionStart adds the project briefing; UserPromptSubmit adds up to 3 memories "
    "that clearly relate to the prompt; PreCompact and Stop capture decisions, conventions "
    "and fixed bugs from the transcript (stored in the background). Hooks never print errors: "
    "see $MEMCTL_HOME/logs/hooks.log."))
def install_claude(scope: ScopeOpt = "project", repo: RepoOpt = None,
                   dry_run: DryRunOpt = False, as_json: JsonOpt = False) -> None:
    from integrations import claude

    t = claude.target(scope, repo)
    _report("claude", scope, claude.plan_install(t), dry_run, as_json, undo=False)


@uninstall_app.command("claude", help=(
    "Remove memctl's MCP server and hooks from Claude Code's config, and nothing else.\n\n"
    "A config file left empty is deleted. Memories stay in the store."))
def uninstall_claude(scope: ScopeOpt = "project", repo: RepoOpt = None,
                     dry_run: DryRunOpt = False, as_json: JsonOpt = False) -> None:
    from integrations import claude

    t = claude.target(scope, repo)
    _report("claude", scope, claude.plan_uninstall(t), dry_run, as_json, undo=True)


@install_app.command("cursor", help=(
    "Register memctl's MCP server with Cursor, with a rule that tells the agent when to call "
    "briefing, recall, remember and feedback.\n\n"
    "Project scope writes .cursor/mcp.json (merged with what is there) and "
    ".cursor/rules/memctl.mdc; user scope writes ~/.cursor/mcp.json only. Running it again "
    "changes nothing; `memctl uninstall cursor` reverses it."))
def install_cursor(scope: ScopeOpt = "project", repo: RepoOpt = None,
                   dry_run: DryRunOpt = False, as_json: JsonOpt = False) -> None:
    from integrations import cursor

    t = cursor.target(scope, repo)
    _report("cursor", scope, cursor.plan_install(t), dry_run, as_json, undo=False)


@uninstall_app.command("cursor", help=(
    "Remove memctl's MCP server and rules file from Cursor's config, and nothing else."))
def uninstall_cursor(scope: ScopeOpt = "project", repo: RepoOpt = None,
                     dry_run: DryRunOpt = False, as_json: JsonOpt = False) -> None:
    from integrations import cursor

    t = cursor.target(scope, repo)
    _report("cursor", scope, cursor.plan_uninstall(t), dry_run, as_json, undo=True)


@hook_app.command("claude", help=(
    "Handle one Claude Code hook event (its JSON on stdin). Prints context or nothing and "
    "always exits 0; problems go to $MEMCTL_HOME/logs/hooks.log."))
def hook_claude(
    event: Annotated[str | None, typer.Argument(
        help="SessionStart, UserPromptSubmit, PreCompact or Stop (default: the JSON's "
        "hook_event_name).")] = None,
) -> None:
    from integrations.claude_hooks import run

    raise typer.Exit(run(event))
