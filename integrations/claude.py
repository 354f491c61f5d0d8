"""What `memctl install claude` writes into Claude Code's configuration, and how it is undone.

Project scope: the MCP server in `<repo>/.mcp.json` (pinned to the repository with
`--project`) and the hooks in `<repo>/.claude/settings.json`. User scope: the server in
`~/.claude.json` (top-level `mcpServers`; the server then resolves the project from the
directory Claude Code starts it in) and the hooks in `~/.claude/settings.json`.

Commands are registered with the absolute interpreter of the installing environment, so they
work without memctl on `PATH`; a `$MEMCTL_HOME` set at install time is pinned too, so the
agent uses the store it was installed from. Our entries are recognised by the server name
`memctl` and by hook commands that run `integrations.claude_hooks` or `memctl hook claude`;
everything else in those files is kept as it is.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from integrations.jsonconfig import Change, JsonObject, plan_json, prune_empty
from memory.errors import InputError
from memory.project import git_root

SERVER_NAME = "memctl"
SCOPES = ("project", "user")
# Hook events and how long Claude Code may wait for each (seconds). The handlers keep well
# within these on their own (see claude_hooks); the limits are a backstop.
EVENTS: dict[str, int] = {"SessionStart": 20, "UserPromptSubmit": 15, "PreCompact": 30,
                          "Stop": 30}
HOOK_MODULE = "integrations.claude_hooks"
# Our hook commands: this module's entry point, or `memctl hook claude` (also recognised, so
# that entries written by hand or by other versions are replaced, not duplicated).
_OUR_HOOK = re.compile(r"-m\s+integrations\.claude_hooks\b"
                       r"|(?:\bmemctl|\bmemory\.cli)['\"]?\s+hook\s+claude\b")


# -- launch commands -------------------------------------------------------------------------
def memctl_argv() -> list[str]:
    """How to run memctl from this environment, independent of PATH."""
    return [sys.executable, "-m", "memory"]


def pinned_env() -> dict[str, str]:
    home = os.environ.get("MEMCTL_HOME")
    return {"MEMCTL_HOME": str(Path(home).expanduser().resolve())} if home else {}


def server_entry(root: Path | None, with_type: bool = True) -> JsonObject:
    """The `mcpServers.memctl` value: stdio `memctl serve`, pinned to `root` if given."""
    argv = [*memctl_argv(), "serve", *(["--project", str(root)] if root else [])]
    entry: JsonObject = {"type": "stdio"} if with_type else {}
    entry.update(command=argv[0], args=argv[1:])
    env = pinned_env()
    if env:
        entry["env"] = env
    return entry


def hook_command(event: str) -> str:
    """The shell command Claude Code runs for `event` (stdin: the event's JSON).

    It is what `memctl hook claude EVENT` runs, minus the CLI's start-up: hooks run on every
    prompt and every turn, and the module alone starts in a fraction of the time (measured:
    0.14 s of CPU against 2 s through the CLI, whose imports include LanceDB)."""
    env = "".join(f"{k}={shlex.quote(v)} " for k, v in pinned_env().items())
    return env + shlex.join([sys.executable, "-m", HOOK_MODULE, event])


def hook_handler(event: str) -> JsonObject:
    return {"type": "command", "command": hook_command(event), "timeout": EVENTS[event]}


def is_our_handler(handler: object) -> bool:
    return (isinstance(handler, dict) and isinstance(handler.get("command"), str)
            and bool(_OUR_HOOK.search(handler["command"])))


# -- where things go -------------------------------------------------------------------------
def resolve_repo(repo: str | None) -> Path:
    """`--repo` (a directory), else the git root of the working directory."""
    if repo:
        path = Path(repo).expanduser()
        if not path.is_dir():
            raise InputError(f"--repo: not a directory: {repo}")
        return git_root(path) or path.resolve()
    root = git_root(Path.cwd())
    if root is None:
        raise InputError("not inside a git repository: run this in your project or pass "
                         "--repo PATH")
    return root


def user_home() -> Path:
    home = os.environ.get("HOME")
    return Path(home) if home else Path.home()


@dataclass(frozen=True)
class Target:
    scope: str
    mcp_path: Path
    settings_path: Path
    project: Path | None  # pinned project root (project scope)


def target(scope: str, repo: str | None = None) -> Target:
    if scope not in SCOPES:
        raise InputError(f"unknown scope {scope!r}; choose one of: {', '.join(SCOPES)}")
    if scope == "user":
        home = user_home()
        return Target(scope, home / ".claude.json", home / ".claude" / "settings.json", None)
    root = resolve_repo(repo)
    return Target(scope, root / ".mcp.json", root / ".claude" / "settings.json", root)


# -- edits (pure, on parsed JSON) -------------------------------------------------------------
def _object(data: JsonObject, key: str, where: Path) -> JsonObject:
    value = data.setdefault(key, {})
    if not isinstance(value, dict):
        raise InputError(f"{where}: '{key}' is not a JSON object; nothing was written")
    return value


def add_server(data: JsonObject, entry: JsonObject, where: Path) -> JsonObject:
    _object(data, "mcpServers", where)[SERVER_NAME] = entry
    return data


def remove_server(data: JsonObject, where: Path) -> JsonObject:
    if "mcpServers" in data:
        _object(data, "mcpServers", where).pop(SERVER_NAME, None)
        prune_empty(data, "mcpServers")
    return data


def _groups(hooks: JsonObject, event: str, where: Path) -> list[Any]:
    groups = hooks.setdefault(event, [])
    if not isinstance(groups, list):
        raise InputError(f"{where}: 'hooks.{event}' is not a list; nothing was written")
    return groups


def _rewrite_groups(groups: list[Any], replacement: JsonObject | None) -> list[Any]:
    """Groups with our handlers removed, the first one replaced by `replacement` in place
    (appended in a new group if there was none). Groups only we emptied are dropped."""
    out: list[Any] = []
    placed = replacement is None
    for group in groups:
        handlers = group.get("hooks") if isinstance(group, dict) else None
        if not isinstance(handlers, list) or not any(is_our_handler(h) for h in handlers):
            out.append(group)
            continue
        kept = []
        for handler in handlers:
            if not is_our_handler(handler):
                kept.append(handler)
            elif not placed:
                kept.append(replacement)
                placed = True
        if kept:
            out.append({**group, "hooks": kept})
    if not placed:
        out.append({"hooks": [replacement]})
    return out


def add_hooks(data: JsonObject, where: Path) -> JsonObject:
    hooks = _object(data, "hooks", where)
    for event in EVENTS:
        hooks[event] = _rewrite_groups(_groups(hooks, event, where), hook_handler(event))
    return data


def remove_hooks(data: JsonObject, where: Path) -> JsonObject:
    if "hooks" not in data:
        return data
    hooks = _object(data, "hooks", where)
    for event in list(hooks):
        if isinstance(hooks[event], list):
            hooks[event] = _rewrite_groups(hooks[event], None)
            prune_empty(hooks, event)
    prune_empty(data, "hooks")
    return data


# -- plans -----------------------------------------------------------------------------------
def _json_change(path: Path, edit: Callable[[JsonObject, Path], JsonObject],
                 cleanup: tuple[Path, ...] = ()) -> Change:
    return plan_json(path, lambda data: edit(data, path), cleanup)


def plan_install(t: Target) -> list[Change]:
    entry = server_entry(t.project)
    return [
        _json_change(t.mcp_path, lambda d, p: add_server(d, entry, p)),
        _json_change(t.settings_path, add_hooks),
    ]


def plan_uninstall(t: Target) -> list[Change]:
    return [
        _json_change(t.mcp_path, remove_server),
        # `.claude/` goes too if we leave it empty (user scope: ~/.claude, likewise).
        _json_change(t.settings_path, remove_hooks, (t.settings_path.parent,)),
    ]
