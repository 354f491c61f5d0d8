"""`memctl hooks ...` and `memctl capture ...`: git auto-capture commands."""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:  # heavy imports stay inside the commands: hooks and --help stay fast
    from memory.service import Memories

hooks_app = typer.Typer(help="Install or remove the git hooks that capture commits.",
                        no_args_is_help=True)
capture_app = typer.Typer(help="Capture knowledge from elsewhere (git history).",
                          no_args_is_help=True)

RepoOpt = Annotated[Path, typer.Option("--repo", "-r", show_default=False, help="The git "
                    "repository (any directory in its work tree). Default: the working "
                    "directory.")]
ProjectOpt = Annotated[str | None, typer.Option("--project", "-p", help="Project to store "
                       "commits in. Default: $MEMCTL_PROJECT, else the repository.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
LOG_NAME = "git-capture.log"
MAX_LOG_BYTES = 1_000_000
# Help shown by --help (rich markup keeps single line breaks, so paragraphs are one string).
INSTALL_HELP = (
    "Capture every commit, merge, amend and rebase as `commit` memories.\n\n"
    "Installs post-commit, post-merge and post-rewrite hooks (honouring core.hooksPath and "
    "worktrees). They return at once: the capture runs detached in the background, and its "
    "failures go to logs/git-capture.log in the data directory, never to git.\n\n"
    "Hooks already there are kept (renamed HOOK.memctl-chained) and still run first, with the "
    "same arguments and input; `memctl hooks uninstall` puts them back. Running install again "
    "changes nothing. Set MEMCTL_GIT_CAPTURE=0 to pause capturing.")
STATUS_HELP = (
    "Show each hook's state: installed, outdated, foreign (not memctl's) or absent.\n\n"
    "outdated: installed from another Python environment; `memctl hooks install` updates it.")
BACKFILL_HELP = (
    "Back-fill git history as `commit` memories.\n\n"
    "Reads REV..HEAD (default: all of HEAD's history, at most the newest --max commits), "
    "oldest first, and stores each commit's message, author, date, changed files and "
    "diffstat, with secrets redacted. Commits already captured, by the hooks or an earlier "
    "run, are skipped, so it is safe to run again.\n\n"
    "Example: memctl capture git --since v1.0")


def _emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False, default=str) + "\n")


def _err():  # -> rich Console on stderr (imported lazily)
    from rich.console import Console

    return Console(stderr=True)


def _open(root: Path, project: str | None, status: Callable[[str], Any] | None = None
          ) -> Memories:
    from memory.app import open_memories

    return open_memories(project or os.environ.get("MEMCTL_PROJECT") or str(root),
                         status=status)


# -- hooks -------------------------------------------------------------------------------
def _print_states(states: list, as_json: bool) -> None:
    if as_json:
        _emit_json([s.to_public() for s in states])
        return
    for s in states:
        chained = f" (runs the previous hook, kept as {s.hook}.memctl-chained)" if s.chained else ""
        print(f"{s.hook:<13} {s.state:<9} {s.path}{chained}")


@hooks_app.command("install", help=INSTALL_HELP)
def hooks_install(repo: RepoOpt = Path("."), as_json: JsonOpt = False) -> None:
    """Capture every commit, merge, amend and rebase as `commit` memories."""
    from integrations import githooks

    _print_states(githooks.install(repo), as_json)


@hooks_app.command("uninstall")
def hooks_uninstall(repo: RepoOpt = Path("."), as_json: JsonOpt = False) -> None:
    """Remove memctl's git hooks and put back the hooks they were chained to."""
    from integrations import githooks

    _print_states(githooks.uninstall(repo), as_json)


@hooks_app.command("status", help=STATUS_HELP)
def hooks_status(repo: RepoOpt = Path("."), as_json: JsonOpt = False) -> None:
    """Show each hook's state: installed, outdated, foreign (not memctl's) or absent."""
    from integrations import githooks

    _print_states(githooks.status(repo), as_json)


# -- capture -----------------------------------------------------------------------------
@capture_app.command("git", help=BACKFILL_HELP)
def capture_git(
    since: Annotated[str | None, typer.Option(help="Capture only commits after this one "
                     "(REV..HEAD). Default: all of HEAD's history, up to --max.")] = None,
    max_commits: Annotated[int, typer.Option("--max", min=1, help="At most this many of "
                           "the newest commits; older ones are counted, not read.")] = 2000,
    repo: RepoOpt = Path("."),
    project: ProjectOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Back-fill git history as `commit` memories (skipping commits already captured)."""
    from rich import progress as rp

    from integrations import gitcapture

    err = _err()
    root = gitcapture.repo_root(repo)
    base = gitcapture.resolve(root, since, "--since") if since is not None else None
    shas, beyond = ([], 0)
    if gitcapture.has_head(root):
        shas, beyond = gitcapture.rev_list(root, "HEAD", base, max_commits)
    mem = _open(root, project, lambda m: err.status(f"[dim]{m}[/dim]", spinner="dots"))
    with rp.Progress(rp.TextColumn("{task.description}"), rp.BarColumn(),
                     rp.MofNCompleteColumn(), rp.TimeElapsedColumn(), console=err,
                     transient=True) as bar:
        task = bar.add_task("capturing commits", total=len(shas))
        report = gitcapture.capture(mem, root, shas, link=False,
                                    progress=lambda n: bar.advance(task, n))
    if as_json:
        _emit_json({"repo": str(root), "project": mem.project.key, **report.to_public(),
                    "not_read": beyond})
        return
    more = f"; {beyond} older commits not read (raise --max)" if beyond else ""
    print(f"captured {len(report.captured)} commits, skipped {report.skipped} already "
          f"captured{more}")


def _log_failure(command: str, exc: BaseException) -> None:
    """Background captures have no terminal: their failures go to a log in the data dir."""
    from memory.config import default_home

    try:
        logs = default_home() / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log = logs / LOG_NAME
        if log.exists() and log.stat().st_size > MAX_LOG_BYTES:
            log.replace(log.with_name(LOG_NAME + ".1"))
        when = datetime.now(UTC).isoformat(timespec="seconds")
        lines = traceback.format_exception(exc)
        with log.open("a", encoding="utf-8") as f:
            f.write(f"{when} {command}: {type(exc).__name__}: {exc}\n{''.join(lines)}\n")
    except OSError:
        pass  # nowhere to log to (e.g. an unusable data dir): stay silent, never fail git


@contextmanager
def _logged(command: str) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        _log_failure(command, exc)
        raise


@capture_app.command("commit", hidden=True)
def capture_commit(
    sha: Annotated[str, typer.Argument(help="The commit (resolved by the hook).")],
    since: Annotated[str | None, typer.Option(help="Also capture since..SHA (post-merge: "
                     "ORIG_HEAD).")] = None,
    repo: RepoOpt = Path("."),
    project: ProjectOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """What the post-commit and post-merge hooks run in the background. A merge commit also
    brings in the commits it merged (bounded)."""
    from integrations import gitcapture

    with _logged(f"capture commit {sha} --repo {repo}"):
        root = gitcapture.repo_root(repo)
        head = gitcapture.resolve(root, sha, "commit")
        base = gitcapture.resolve(root, since, "--since") if since else None
        if base is None:
            parents = gitcapture.git(root, "rev-list", "--parents", "-n", "1", head).split()
            base = parents[1] if len(parents) > 2 else None  # a merge: what it brought in
        shas = [head]
        if base is not None:
            shas, _ = gitcapture.rev_list(root, head, base, gitcapture.HOOK_MAX_COMMITS)
        report = gitcapture.capture(_open(root, project), root, shas)
    if as_json:
        _emit_json(report.to_public())


@capture_app.command("rewritten", hidden=True)
def capture_rewritten(
    repo: RepoOpt = Path("."),
    project: ProjectOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """What the post-rewrite hook runs in the background: reads "old new" lines on stdin and
    stores each new commit superseding the old commit's memory."""
    from integrations import gitcapture

    with _logged(f"capture rewritten --repo {repo}"):
        pairs = gitcapture.parse_pairs(sys.stdin.read())
        root = gitcapture.repo_root(repo)
        report = gitcapture.capture_rewritten(_open(root, project), root, pairs)
    if as_json:
        _emit_json(report.to_public())
