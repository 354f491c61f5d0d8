"""`memctl bench ...`: benchmarks are commands that print what they measured."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from memory.bench.machine import describe, summary
from memory.errors import InputError

bench_app = typer.Typer(help="Benchmarks: each prints what it measured (--json for scripts).",
                        no_args_is_help=True)
out = Console()
err = Console(stderr=True)


@contextmanager
def scratch_home() -> Iterator[Path]:
    """A throwaway data dir, seeded with the user's converted models to skip reconversion."""
    from memory.config import paths

    home = Path(tempfile.mkdtemp(prefix="memctl-bench-"))
    try:
        user_models = paths().models
        if user_models.is_dir():
            (home / "models").mkdir()
            for f in user_models.iterdir():
                if f.is_file() and not f.name.endswith(".lock"):
                    try:
                        os.link(f, home / "models" / f.name)
                    except OSError:
                        shutil.copy2(f, home / "models" / f.name)
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _pct(x: float) -> str:
    return f"{x:.3f}"


@bench_app.command()
def locomo(
    data: Annotated[Path, typer.Option("--data", help="Directory of LoCoMo conversation "
                    "JSON files (e.g. ../shared/data/locomo-dev).")],
    mode: Annotated[str, typer.Option("--mode", help="fused, bm25, vector or all.")] = "all",
    k: Annotated[str, typer.Option("-k", help="Cut-offs to report (5,10).")] = "5,10",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    rerank: Annotated[bool, typer.Option("--rerank", help="Also rerank each mode's top "
                      "hits with the local generator and report '<mode>+rerank' on the same "
                      "hits, plus the rerank latency (slow: seconds per question).")] = False,
    rerank_top: Annotated[int, typer.Option("--rerank-top", min=2, max=50, help="Hits "
                          "reranked per question.")] = 20,
    expand: Annotated[bool, typer.Option("--expand", help="Also expand short questions "
                      "with generator keywords and report '<mode>+expand'.")] = False,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Only the first N "
                     "questions of each conversation (for quicker runs).")] = None,
) -> None:
    """Turn- and session-level recall on LoCoMo: each conversation in a fresh project."""
    from rich.progress import Progress

    from memory.app import open_context
    from memory.bench import locomo as lb

    if not data.is_dir():
        raise InputError(f"no such directory: {data}")
    machine = describe()
    variants = _variants(rerank, rerank_top, expand) if rerank or expand else None
    modes = list(lb.MODES) if mode == "all" else [m.strip() for m in mode.split(",")]
    cutoffs = [int(x) for x in k.split(",") if x.strip()]
    if any(c not in (5, 10) for c in cutoffs):
        raise InputError("-k takes 5 and/or 10")
    with scratch_home() as home, Progress(console=err, transient=True) as bar:
        ctx = open_context(home)
        task = bar.add_task("loading", total=None)

        def progress(label: str, done: int, total: int) -> None:
            bar.update(task, description=label, completed=done, total=total)

        result = lb.run(ctx.memories, data, modes, progress, limit=limit, variants=variants)
    result["machine"] = machine
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    _locomo_table(result, cutoffs)


def _variants(rerank: bool, top: int, expand: bool) -> Any:
    from memory.bench.locomo import Variants
    from memory.config import paths
    from memory.llm.generator import load_generator
    from memory.llm.prefix_cache import PrefixCache
    from memory.recall.rerank import QueryExpander, Reranker

    with err.status("loading the generator"):
        gen = load_generator(paths().models)
    cache = PrefixCache(256 << 20)
    return Variants(Reranker(gen, cache, top=top) if rerank else None,
                    QueryExpander(gen, cache) if expand else None)


def _locomo_table(result: dict[str, Any], cutoffs: list[int]) -> None:
    table = Table(title=f"LoCoMo: {result['conversations']} conversations, "
                        f"{result['questions']} questions (categories 1-4)")
    table.add_column("mode")
    table.add_column("scope")
    for c in cutoffs:
        table.add_column(f"turn R@{c}", justify="right")
    table.add_column("session R@5", justify="right")
    table.add_column("MRR", justify="right")
    for mode, s in result["modes"].items():
        rows = [("all", s), *((f"cat {c}", v) for c, v in s["per_category"].items())]
        for scope, v in rows:
            table.add_row(mode, f"{scope} ({v['questions']})",
                          *(_pct(v[f"turn_recall@{c}"]) for c in cutoffs),
                          _pct(v["session_recall@5"]), _pct(v["mrr"]))
    out.print(table)
    for name, t in result.get("latency_ms", {}).items():
        out.print(f"{name}: {t['mean']} ms mean, {t['p95']} ms p95 per question")
    out.print(f"[dim]machine: {summary(result['machine'])}[/dim]")


@bench_app.command()
def latency(
    n: Annotated[str, typer.Option("--n", help="Project sizes to build, comma-separated.")
                 ] = "10000,100000",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Recall latency (p50/p95/p99, query embedding included), per-channel time, ingest
    rate, disk size and peak RSS on synthetic projects of realistic memories."""
    from rich.progress import Progress

    from memory.app import open_context
    from memory.bench.latency import run_size

    try:
        sizes = [int(x.replace("_", "")) for x in n.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"--n takes sizes like 10000,100000, not {n!r}") from None
    if not sizes or any(s < 100 or s > 2_000_000 for s in sizes):
        raise InputError("--n sizes must be between 100 and 2,000,000")
    machine = describe()
    results: dict[str, Any] = {}
    for size in sorted(sizes):
        with scratch_home() as home, Progress(console=err, transient=True) as bar:
            task = bar.add_task("loading", total=None)

            def progress(label: str, done: int, total: int, bar=bar, task=task) -> None:
                bar.update(task, description=label, completed=done, total=total)

            results[str(size)] = run_size(open_context(home), size, progress)
    if as_json:
        sys.stdout.write(json.dumps({"sizes": results, "machine": machine}) + "\n")
        return
    table = Table(title="Recall latency (end to end, query embedding included)")
    for col in ("memories", "p50 ms", "p95 ms", "p99 ms", "batch ingest/s", "single ingest/s",
                "disk MB", "peak RSS MB", "vector R@10/150"):
        table.add_column(col, justify="right")
    for size, r in results.items():
        table.add_row(f"{int(size):,}", str(r["p50_ms"]), str(r["p95_ms"]), str(r["p99_ms"]),
                      str(r["batch_ingest_per_s"]), str(r["single_ingest_per_s"]),
                      str(r["disk_mb"]), str(r["rss_mb"]),
                      f"{r['semantic_recall@10']} / {r['semantic_recall@150']}"
                      + ("" if r["semantic_prefilter"] else " (exact)"))
    out.print(table)
    for size, r in results.items():
        parts = ", ".join(f"{k} {v} ms" for k, v in r["channel_ms"].items())
        out.print(f"[dim]{int(size):,}: per channel: {parts}; the recall right after a "
                  f"usage-count flush: {r['after_flush_ms']} ms; the embedder alone: "
                  f"{r['embed_only_per_s']} texts/s (batch ingest's ceiling)[/dim]")
    out.print(f"[dim]machine: {summary(machine)}[/dim]")


@bench_app.command()
def startup(as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")
                               ] = False) -> None:
    """Cold start of `memctl serve` driven by a real MCP client over stdio: time to the
    initialize reply, to tools/list, to the first recall answer, and RSS after it."""
    from mcp_server.bench import bench_startup

    machine = describe()
    with scratch_home() as home:
        result = bench_startup(home)
    result["machine"] = machine
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    table = Table(title="MCP server cold start (stdio, real client)")
    for col in ("initialize s", "tools/list s", "first recall s", "RSS MB"):
        table.add_column(col, justify="right")
    table.add_row(*(str(result[k]) for k in ("initialize_s", "tools_list_s", "first_recall_s",
                                             "rss_mb")))
    out.print(table)
    out.print(f"[dim]machine: {summary(result['machine'])}[/dim]")


# Benchmarks that live in their own modules register here.
from memory.bench.ann import ann  # noqa: E402
from memory.bench.crash import crash  # noqa: E402
from memory.bench.kv import kv  # noqa: E402
from memory.bench.trust import trust  # noqa: E402

bench_app.command()(crash)
bench_app.command()(trust)
bench_app.command()(kv)
bench_app.command()(ann)
