"""`memctl bench ann`: flat vector search against the ANN index, by table size.

Kept free of heavy imports: every `memctl` command imports the bench commands.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer


def ann(
    n: Annotated[str, typer.Option("--n", help="Table sizes to measure, comma-separated.")
                 ] = "10000,25000,50000",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Flat (exact) vector search against the ANN index (IVF-HNSW-SQ with exact re-ranking)
    by table size: latency, recall@10 against exact search, build time. Sets where memctl
    switches to the index."""
    import shutil
    import sys
    import tempfile
    from pathlib import Path

    from rich.console import Console
    from rich.table import Table

    from memory.bench.ann_measure import INDEX_TYPE, LIMIT, REFINE, measure
    from memory.bench.machine import describe, summary
    from memory.errors import InputError
    from memory.store.table import ANN_MIN_ROWS

    try:
        sizes = sorted(int(x.replace("_", "")) for x in n.split(",") if x.strip())
    except ValueError:
        raise InputError(f"--n takes sizes like 10000,50000, not {n!r}") from None
    if not sizes or any(s < 500 or s > 1_000_000 for s in sizes):
        raise InputError("--n sizes must be between 500 and 1,000,000")
    machine = describe()
    err = Console(stderr=True)
    home = Path(tempfile.mkdtemp(prefix="memctl-bench-ann-"))
    try:
        with err.status("building") as status:
            rows = measure(home, sizes, progress=lambda m: status.update(m))
    finally:
        shutil.rmtree(home, ignore_errors=True)
    if as_json:
        sys.stdout.write(json.dumps({"index": INDEX_TYPE, "refine_factor": REFINE,
                                     "min_rows": ANN_MIN_ROWS, "rows": rows,
                                     "machine": machine}) + "\n")
        return
    table = Table(title=f"Vector search, {LIMIT} candidates with the recall filter: flat vs "
                        f"{INDEX_TYPE} (refine x{REFINE}); memctl indexes from "
                        f"{ANN_MIN_ROWS:,} rows")
    for col in ("vectors", "flat p50 ms", "flat p95 ms", "ANN p50 ms", "ANN p95 ms",
                "ANN recall@10", "build s"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(f"{r['vectors']:,}", *(str(r[k]) for k in (
            "flat_p50_ms", "flat_p95_ms", "ann_p50_ms", "ann_p95_ms", "ann_recall@10",
            "build_s")))
    Console().print(table)
    Console().print(f"[dim]machine: {summary(machine)}[/dim]")
