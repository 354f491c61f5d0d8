"""Install and remove the git hooks that capture commits (post-commit, post-merge, post-rewrite).

A hook that is already there is never clobbered: it is renamed to `<hook>.memctl-chained` and
our script runs it first, with the same arguments and stdin, and exits with its status.
Uninstall puts it back. Our scripts carry MARKER so we recognise them.

The scripts are POSIX sh and never start Python in the foreground: they resolve the commit,
then launch `python -m memory.cli capture ...` fully detached, so git returns at once and a
capture problem never reaches the git command.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from memory.errors import InputError

HOOKS = ("post-commit", "post-merge", "post-rewrite")
MARKER = "# memctl-git-hook"
CHAINED_SUFFIX = ".memctl-chained"

_PRELUDE = """#!/bin/sh
{marker} (written by `memctl hooks install`; `memctl hooks uninstall` removes it)
# The {hook} hook that was here before, if any, is kept as {hook}{suffix} and
# runs first with the same arguments and input. Then the commit is captured as a memctl
# memory by a detached background process: git never waits for it, and a capture failure
# never fails git (it is logged under the memctl data dir). MEMCTL_GIT_CAPTURE=0 pauses it.
py={python}
chained="${{0%/*}}/{hook}{suffix}"
repo=$PWD
status=0
# A variable, not a function: dash does not apply a function call's redirections to the
# background job, which then holds git's stdout open (and whoever reads it waits).
if command -v setsid >/dev/null 2>&1; then detach=setsid; else detach=nohup; fi
enabled() {{
  [ "${{MEMCTL_GIT_CAPTURE:-1}}" != 0 ] && [ -x "$py" ]
}}
"""

# A rebase runs post-commit for every commit it picks; its post-rewrite run covers them all
# (and links each to the commit it replaces), so post-commit stays quiet during a rebase.
_POST_COMMIT = """if [ -x "$chained" ]; then "$chained" "$@" || status=$?; fi
# One git call for both (two lines: the git dir, then the sha).
if enabled && out=$(git rev-parse --git-dir -q --verify HEAD 2>/dev/null); then
  gitdir=${out%
*}
  head=${out##*
}
  if [ ! -d "$gitdir/rebase-merge" ] && [ ! -d "$gitdir/rebase-apply" ]; then
    $detach "$py" -P -m memory.cli capture commit "$head" --repo "$repo" \\
      </dev/null >/dev/null 2>&1 &
  fi
fi
exit "$status"
"""

# $1 is 1 for a squash merge, which makes no commit.
_POST_MERGE = """if [ -x "$chained" ]; then "$chained" "$@" || status=$?; fi
if enabled && [ "$1" != 1 ]; then
  head=$(git rev-parse -q --verify HEAD 2>/dev/null)
  orig=$(git rev-parse -q --verify ORIG_HEAD 2>/dev/null)
  if [ -n "$head" ]; then
    $detach "$py" -P -m memory.cli capture commit "$head" ${orig:+--since "$orig"} \\
      --repo "$repo" </dev/null >/dev/null 2>&1 &
  fi
fi
exit "$status"
"""

# stdin holds "old new" lines: read once, hand the same lines to both readers.
_POST_REWRITE = """input=$(cat)
feed() { [ -z "$input" ] || printf '%s\\n' "$input"; }
if [ -x "$chained" ]; then feed | "$chained" "$@" || status=$?; fi
if enabled && [ -n "$input" ]; then
  { feed | $detach "$py" -P -m memory.cli capture rewritten --repo "$repo"; } \\
    </dev/null >/dev/null 2>&1 &
fi
exit "$status"
"""

_BODIES = {"post-commit": _POST_COMMIT, "post-merge": _POST_MERGE,
           "post-rewrite": _POST_REWRITE}


@dataclass
class HookState:
    hook: str
    path: str
    state: str  # installed | outdated | absent | foreign (someone else's hook, not chained)
    chained: bool  # a pre-existing hook is kept aside and run by ours

    def to_public(self) -> dict[str, object]:
        return self.__dict__.copy()


def script(hook: str, python: str | None = None) -> str:
    """The hook script for `hook`, calling `python` (default: this interpreter)."""
    prelude = _PRELUDE.format(marker=MARKER, hook=hook, suffix=CHAINED_SUFFIX,
                              python=shlex.quote(python or sys.executable))
    return prelude + _BODIES[hook]


def _git(repo: Path, *args: str) -> str:
    try:
        proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                              timeout=30)
    except FileNotFoundError:
        raise InputError("git is not installed (or not on PATH)") from None
    if proc.returncode != 0:
        raise InputError(f"not a git work tree: {repo}")
    return proc.stdout.strip()


def hooks_dir(repo: Path) -> Path:
    """Where git looks for this work tree's hooks (honours core.hooksPath and worktrees)."""
    if not repo.is_dir():
        raise InputError(f"no such directory: {repo}")
    top = Path(_git(repo, "rev-parse", "--show-toplevel"))
    found = Path(_git(top, "rev-parse", "--git-path", "hooks"))
    return found if found.is_absolute() else top / found


def is_ours(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return MARKER.encode() in f.read(4096)
    except OSError:
        return False


def _exists(path: Path) -> bool:
    return path.exists() or path.is_symlink()


def status(repo: Path, python: str | None = None) -> list[HookState]:
    directory = hooks_dir(repo)
    states = []
    for hook in HOOKS:
        path = directory / hook
        if not _exists(path):
            state = "absent"
        elif not is_ours(path):
            state = "foreign"
        elif path.read_text(errors="replace") != script(hook, python):
            state = "outdated"  # e.g. installed from another Python environment
        else:
            state = "installed"
        states.append(HookState(hook, str(path), state,
                                _exists(directory / (hook + CHAINED_SUFFIX))))
    return states


def _write_script(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.memctl-tmp")
    tmp.write_text(text)
    tmp.chmod(0o755)
    os.replace(tmp, path)  # atomic: git never runs a half-written hook


def install(repo: Path, python: str | None = None) -> list[HookState]:
    """Install our three hooks; idempotent. A foreign hook is moved aside and chained."""
    directory = hooks_dir(repo)
    directory.mkdir(parents=True, exist_ok=True)
    for hook in HOOKS:
        path, chained = directory / hook, directory / (hook + CHAINED_SUFFIX)
        text = script(hook, python)
        if _exists(path) and not is_ours(path):
            if _exists(chained):
                raise InputError(f"{path} is not memctl's, and {chained.name} already exists: "
                                 "merge them by hand, then re-run `memctl hooks install`")
            os.rename(path, chained)
        elif _exists(path) and path.read_text(errors="replace") == text:
            continue  # already installed: change nothing
        _write_script(path, text)
    return status(repo, python)


def uninstall(repo: Path) -> list[HookState]:
    """Remove our hooks and put back the hooks they chained to. Foreign hooks are left alone."""
    directory = hooks_dir(repo)
    for hook in HOOKS:
        path, chained = directory / hook, directory / (hook + CHAINED_SUFFIX)
        if _exists(path) and not is_ours(path):
            continue  # replaced by someone else since: not ours to touch
        path.unlink(missing_ok=True)
        if _exists(chained):
            os.rename(chained, path)
    return status(repo)
