"""The `memctl` command line."""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from memory.errors import InputError, MemctlError

app = typer.Typer(
    name="memctl",
    help="Local-first memory for coding agents: remember and recall project knowledge.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    add_completion=False,
)
# Sub-apps are imported after `app` so help lists the core commands first; each keeps its
# heavy imports inside its commands so `--help` and git hooks stay fast.
from integrations.agents_cli import hook_app, install_app, uninstall_app  # noqa: E402
from integrations.git_cli import capture_app, hooks_app  # noqa: E402
from integrations.watch_cli import watch  # noqa: E402
from memory.bench.cli import bench_app  # noqa: E402

app.add_typer(bench_app, name="bench")
app.add_typer(hooks_app, name="hooks")
app.add_typer(capture_app, name="capture")
app.add_typer(install_app, name="install")
app.add_typer(uninstall_app, name="uninstall")
app.add_typer(hook_app, name="hook", hidden=True)
out = Console(soft_wrap=True)
err = Console(stderr=True)

ProjectOpt = Annotated[
    str | None,
    typer.Option("--project", "-p", help="Project name or path. Default: $MEMCTL_PROJECT, "
                 "else the git root of the working directory, else 'default'."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False, default=str) + "\n")


def _model_status(message: str):  # a spinner on stderr while the model is prepared
    return err.status(f"[dim]{escape(message)}[/dim]", spinner="dots")


def _memories(project: str | None):  # -> Memories (import kept lazy for fast --help)
    from memory.app import open_memories

    return open_memories(project, status=_model_status)


def _parse_date(value: str | None, what: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InputError(f"{what}: not an ISO date or time: {value!r} (e.g. 2024-05-01)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=err, transient=True)


@app.command()
def add(
    text: Annotated[str, typer.Argument(help="What to remember; '-' reads it from stdin.")],
    kind: Annotated[str, typer.Option("--kind", "-k", help="fact, decision, convention, "
                    "preference, bug, episode, commit, doc or note.")] = "note",
    tag: Annotated[list[str] | None, typer.Option("--tag", "-t", help="Tag (repeatable).")] = None,
    file: Annotated[list[str] | None, typer.Option("--file", "-f",
                    help="A file this memory concerns (repeatable).")] = None,
    importance: Annotated[float, typer.Option(help="0 to 1; important memories fade slower.")
                          ] = 0.5,
    title: Annotated[str | None, typer.Option(help="Optional short title.")] = None,
    supersedes: Annotated[str | None, typer.Option(help="Id of a memory this one replaces.")
                          ] = None,
    project: ProjectOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Store a memory and print its id."""
    if text == "-":
        text = sys.stdin.buffer.read().decode("utf-8", "replace")
    result = _memories(project).remember(text, kind=kind, tags=tag, files=file,
                                         importance=importance, title=title,
                                         supersedes=supersedes, source="user")
    if as_json:
        # `status` is what this add did (stored / duplicate / quarantined); the record's own
        # status (active, quarantined, archived) would otherwise be shadowed by it.
        emit_json({**result.memory.to_public(), **result.to_public(),
                   "memory_status": result.memory.status})
        return
    print(result.id)
    if result.status == "duplicate":
        err.print(f"[yellow]already remembered[/yellow] as {result.id}")
    if result.status == "quarantined":
        err.print("[yellow]quarantined[/yellow]: it reads like an instruction to an agent; "
                  f"release it with `memctl release {result.id}`")
    if result.redactions:
        err.print(f"[yellow]redacted[/yellow]: {', '.join(result.redactions)}")
    for s in result.similar:
        err.print(f"[dim]similar {s.id} ({s.similarity:.2f}): {escape(s.snippet)}[/dim]")
    for c in result.contradictions:
        loser = "this memory" if c.lowered == result.id else c.id
        err.print(f"[yellow]contradicts {c.id} ({escape(c.reason)}): trust of {loser} "
                  "lowered[/yellow]")


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="What to look for (words, identifiers, paths, "
                     "time expressions like 'last week').")],
    k: Annotated[int, typer.Option("-k", help="How many hits (1-100).")] = 10,
    kind: Annotated[list[str] | None, typer.Option("--kind", help="Only these kinds.")] = None,
    file: Annotated[list[str] | None, typer.Option("--file", "-f",
                    help="Files you are working on: boosts memories about them.")] = None,
    since: Annotated[str | None, typer.Option(help="Only memories from this date on.")] = None,
    until: Annotated[str | None, typer.Option(help="Only memories before this date.")] = None,
    include_superseded: Annotated[bool, typer.Option(help="Also show replaced memories.")
                                  ] = False,
    project: ProjectOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Recall memories, best first, with why each one ranked."""
    from memory.recall import RecallOptions

    if k < 1 or k > 100:
        raise InputError("-k must be between 1 and 100")
    since_at, until_at = _parse_date(since, "--since"), _parse_date(until, "--until")
    if since_at and until_at and since_at >= until_at:
        raise InputError("--since must be before --until")
    opts = RecallOptions(k=k, kinds=kind, files=file or (), since=since_at, until=until_at,
                         include_superseded=include_superseded)
    hits = _memories(project).search(query, opts)
    if as_json:
        emit_json([h.to_public() for h in hits])
        return
    if not hits:
        err.print("no memories matched")
        return
    table = Table(show_header=True, header_style="bold", expand=False)
    for col in ("id", "kind", "date", "score", "memory", "why"):
        table.add_column(col, overflow="fold")
    for h in hits:
        m = h.memory
        table.add_row(m.id, m.kind, m.valid_from.date().isoformat(), f"{h.score:.3f}",
                      escape(m.text if len(m.text) < 300 else m.text[:299] + "…"),
                      escape(h.why()))
    out.print(table)


@app.command()
def show(memory_id: Annotated[str, typer.Argument(help="Memory id.")],
         project: ProjectOpt = None, as_json: JsonOpt = False) -> None:
    """Show one memory in full, with provenance and its supersede history."""
    mem = _memories(project)
    memory = mem.get(memory_id)
    history = mem.history(memory)
    if as_json:
        emit_json({**memory.to_public(), "history": [h.id for h in history]})
        return
    out.print(f"[bold]{memory.id}[/bold]  {memory.kind}  [dim]{memory.status}[/dim]")
    if memory.title:
        out.print(f"[bold]{escape(memory.title)}[/bold]")
    out.print(escape(memory.text))
    meta = {
        "project": memory.project, "source": memory.source, "agent": memory.agent,
        "session": memory.session, "commit": memory.commit_sha,
        "created": memory.created_at.isoformat(timespec="seconds"),
        "valid": f"{memory.valid_from.isoformat(timespec='seconds')} → "
                 f"{memory.valid_to.isoformat(timespec='seconds') if memory.valid_to else 'now'}",
        "trust": f"{memory.trust:.2f} (α={memory.trust_alpha:.1f}, β={memory.trust_beta:.1f})",
        "importance": memory.importance, "accessed": memory.access_count,
        "tags": ", ".join(memory.tags), "files": ", ".join(memory.files),
        "entities": ", ".join(memory.entities), "redacted": ", ".join(memory.redactions),
        "supersedes": memory.supersedes, "superseded by": memory.superseded_by,
    }
    for key, value in meta.items():
        if value not in (None, ""):
            out.print(f"[dim]{key:>13}[/dim] {escape(str(value))}")
    if len(history) > 1:
        out.print("[dim]      history[/dim] " + " → ".join(
            f"[bold]{h.id}[/bold]" if h.id == memory.id else h.id for h in history))


@app.command("list")
def list_(
    kind: Annotated[str | None, typer.Option(help="Only this kind.")] = None,
    quarantined: Annotated[bool, typer.Option(help="List quarantined memories.")] = False,
    archived: Annotated[bool, typer.Option(help="List forgotten (archived) memories.")] = False,
    include_superseded: Annotated[bool, typer.Option(help="Also list replaced memories.")
                                  ] = False,
    limit: Annotated[int, typer.Option("-n", help="At most this many (0: all).")] = 50,
    project: ProjectOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List memories, newest first."""
    status = "quarantined" if quarantined else "archived" if archived else "active"
    rows = _memories(project).list(kind=kind, status=status,
                                   include_superseded=include_superseded, limit=limit)
    if as_json:
        emit_json([m.to_public() for m in rows])
        return
    if not rows:
        err.print(f"no {status} memories")
        return
    table = Table(show_header=True, header_style="bold")
    for col in ("id", "kind", "date", "trust", "memory"):
        table.add_column(col, overflow="fold")
    for m in rows:
        table.add_row(m.id, m.kind, m.valid_from.date().isoformat(), f"{m.trust:.2f}",
                      escape(m.text if len(m.text) < 200 else m.text[:199] + "…"))
    out.print(table)


@app.command()
def forget(
    memory_id: Annotated[str, typer.Argument(help="Memory id.")],
    hard: Annotated[bool, typer.Option("--hard", help="Erase for real: from the table, the "
                    "index and old versions on disk. Cannot be undone.")] = False,
    project: ProjectOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Archive a memory (hidden from recall, kept in history), or erase it with --hard."""
    memory = _memories(project).forget(memory_id, hard=hard)
    result = {"id": memory.id, "status": "erased" if hard else "archived"}
    if as_json:
        emit_json(result)
    else:
        print(f"{memory.id} {result['status']}")


@app.command()
def feedback(
    memory_id: Annotated[str, typer.Argument(help="Memory id.")],
    verdict: Annotated[str, typer.Argument(help="helpful, wrong, outdated or used.")],
    project: ProjectOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Tell memctl whether a memory helped: it moves the memory's trust."""
    memory = _memories(project).feedback(memory_id, verdict)
    if as_json:
        emit_json(memory.to_public())
    else:
        print(f"{memory.id} trust {memory.trust:.2f}")


@app.command()
def release(memory_id: Annotated[str, typer.Argument(help="Memory id.")],
            project: ProjectOpt = None, as_json: JsonOpt = False) -> None:
    """Release a quarantined memory into recall (you vouch for it)."""
    memory = _memories(project).release(memory_id)
    if as_json:
        emit_json(memory.to_public())
    else:
        print(f"{memory.id} released")


@app.command()
def briefing(
    file: Annotated[list[str] | None, typer.Option("--file", "-f",
                    help="Files you are about to work on: their memories come first.")] = None,
    budget: Annotated[int, typer.Option(help="Character budget (200-20000).")] = 2000,
    project: ProjectOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """What an agent should know when a session starts: conventions, decisions, open bugs,
    recent work, ranked by trust and retention, within a character budget."""
    from memory.briefing import briefing as make_briefing

    if not 200 <= budget <= 20_000:
        raise InputError("--budget must be between 200 and 20000 characters")
    result = make_briefing(_memories(project), files=file or (), budget=budget)
    if as_json:
        emit_json({"project": result.project, "text": result.text, "chars": result.chars,
                   "omitted": result.omitted,
                   "ids": [item.memory.id for item in result.items]})
    elif result.items:
        print(result.text)
    else:
        err.print("nothing to brief yet")


@app.command()
def stats(project: ProjectOpt = None, as_json: JsonOpt = False) -> None:
    """Counts by kind, status and source for the project."""
    mem = _memories(project)
    data = mem.stats()
    data["home"] = str(mem.store.paths.home)
    data["disk_mb"] = round(sum(f.stat().st_size for f in mem.store.paths.home.rglob("*")
                                if f.is_file()) / 1e6, 2)
    if as_json:
        emit_json(data)
        return
    out.print(f"[bold]{escape(data['project'])}[/bold]: {data['total']} memories "
              f"({data['superseded']} superseded)  [dim]{data['home']}, {data['disk_mb']} MB[/dim]")
    for key in ("by_kind", "by_status", "by_source"):
        parts = ", ".join(f"{k} {v}" for k, v in sorted(data[key].items()))
        out.print(f"  [dim]{key.replace('_', ' ')}:[/dim] {parts or '-'}")


@app.command()
def export(project: ProjectOpt = None) -> None:
    """Write the project's memories (all statuses, with history) as JSONL on stdout."""
    from memory.transfer import export_rows

    for row in export_rows(_memories(project)):
        sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="A JSONL file from `memctl export` ('-': stdin).")],
    project: ProjectOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Import memories from JSONL. Idempotent: known ids and duplicates are skipped."""
    from memory.transfer import import_lines

    # Split on "\n" only: export writes U+2028 and U+0085 unescaped inside JSON strings, and
    # str.splitlines() would cut those records in two.
    if str(file) == "-":
        lines = sys.stdin.buffer.read().decode("utf-8", "replace").split("\n")
    elif file.is_file():
        lines = file.read_bytes().decode("utf-8", "replace").split("\n")
    else:
        raise InputError(f"no such file: {file}")
    mem = _memories(project)
    with _progress() as bar:
        task = bar.add_task("importing", total=len(lines))
        report = import_lines(mem, lines, lambda n: bar.advance(task, n))
    if as_json:
        emit_json(report)
    else:
        print(f"imported {report['imported']}, skipped {report['skipped']} "
              f"(already present), rejected {len(report['errors'])}")
        for e in report["errors"][:20]:
            err.print(f"[yellow]line {e['line']}[/yellow]: {escape(e['error'])}")


@app.command()
def reindex(as_json: JsonOpt = False) -> None:
    """Rebuild the full-text (Tantivy) index from the memory table."""
    from memory.app import open_context

    ctx = open_context(status=_model_status)
    total = ctx.store.table.count()
    with _progress() as bar:
        task = bar.add_task("reindexing", total=total)
        n = ctx.store.reindex(lambda done, _t: bar.update(task, completed=done))
    if as_json:
        emit_json({"indexed": n})
    else:
        print(f"reindexed {n} memories")


@app.command()
def doctor(
    repair: Annotated[bool, typer.Option(help="Repair what is found (default).")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Check that the index matches the table (and supersede links are whole); repair it."""
    from memory.app import open_context

    report = open_context().store.doctor(repair=repair)
    data = {**report.__dict__, "clean": report.clean}
    if as_json:
        emit_json(data)
        return
    print(f"table {report.table_rows} memories, index {report.index_docs} documents")
    if report.clean:
        print("ok: index and table agree")
        return
    print(f"missing from index: {len(report.missing_from_index)}; "
          f"orphans in index: {len(report.orphans_in_index)}; "
          f"broken supersede links: {len(report.broken_supersede_links)}")
    print("repaired" if report.repaired else "run `memctl doctor` without --no-repair to fix")
    if not report.repaired:
        raise typer.Exit(1)


@app.command()
def serve(
    http: Annotated[bool, typer.Option("--http", help="Serve streamable HTTP instead of stdio "
                    "(what Claude Code and Cursor launch).")] = False,
    host: Annotated[str, typer.Option(help="HTTP bind address (loopback by default).")
                    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port.")] = 8765,
    allow_remote: Annotated[bool, typer.Option(help="Allow a non-loopback --host.")] = False,
    project: ProjectOpt = None,
) -> None:
    """Run the MCP server on the embedded store (stdio by default)."""
    from mcp_server import serve as run_server

    if not 0 < port < 65536:
        raise InputError("--port must be between 1 and 65535")
    run_server("http" if http else "stdio", host=host, port=port, project=project,
               allow_remote=allow_remote)


app.command()(watch)  # registered here so it lists after the core commands


def _one_line(message: str) -> str:
    """Flattened, with undecodable bytes from argv (lone surrogates) shown as escapes: printing
    them as they are would fail inside the error handler itself."""
    return " ".join(message.split()).encode("utf-8", "backslashreplace").decode("utf-8")


def main() -> None:
    """Entry point: expected failures are one line on stderr, never a traceback."""
    try:
        app()
    except MemctlError as exc:
        # soft_wrap: one line whatever the terminal width, so scripts can read it
        err.print(f"[red]error:[/red] {escape(_one_line(str(exc)))}", soft_wrap=True)
        sys.exit(2 if isinstance(exc, InputError) else 1)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as exc:
        if os.environ.get("MEMCTL_DEBUG"):
            raise
        err.print(f"[red]error:[/red] {type(exc).__name__}: {escape(_one_line(str(exc))[:500])} "
                  "(set MEMCTL_DEBUG=1 for details)", soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    from memory.exiting import run_and_exit

    run_and_exit(main)
