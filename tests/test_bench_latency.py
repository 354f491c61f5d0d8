"""`memctl bench latency` as a user runs it: a real subprocess on a real store and model.
Timings are printed, not asserted; the report's shape and its internal consistency are."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def test_bench_latency_reports_every_figure_and_the_prefilter_recall(home: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEMCTL_", "XDG_"))}
    # Small enough to run in the suite, large enough for the reduced-vector prefilter.
    env.update(MEMCTL_HOME=str(home), MEMCTL_PREFILTER_MIN_ROWS="1000")
    proc = subprocess.run([sys.executable, "-m", "memory.cli", "bench", "latency", "--n",
                           "2000", "--json"], capture_output=True, text=True, env=env,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["machine"]["cores"] >= 1 and report["machine"]["embedder_weights"]
    r = report["sizes"]["2000"]
    assert 0 < r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"]
    assert r["batch_ingest_per_s"] > 0 and r["single_ingest_per_s"] > 0
    assert r["embed_only_per_s"] > 0
    assert r["disk_mb"] > 0 and r["rss_mb"] > 0 and r["after_flush_ms"] > 0
    assert {"embed", "semantic", "lexical", "entity"} <= set(r["channel_ms"])
    assert set(r["stage_ms"]) == {"snapshot", "fuse", "rows", "reinforce"}
    assert r["semantic_prefilter"] is True
    assert 0.9 <= r["semantic_recall@10"] <= 1.0 and 0.8 <= r["semantic_recall@150"] <= 1.0
