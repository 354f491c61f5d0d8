"""Catch catastrophic (super-linear) behaviour without asserting wall-clock timings."""

from __future__ import annotations

import time
from collections.abc import Callable


def cpu_seconds(fn: Callable[[str], object], text: str) -> float:
    # The calling thread's CPU time: neither other processes' load nor a background thread
    # of this one (a store's flusher, LanceDB's runtime) counts.
    started = time.thread_time()
    fn(text)
    return time.thread_time() - started


def assert_linear(fn: Callable[[str], object], text: str, factor: float = 30.0) -> None:
    """10x the input must cost well under the ~100x that quadratic work would."""
    small = min(cpu_seconds(fn, text[: len(text) // 10]) for _ in range(2))
    large = cpu_seconds(fn, text)
    assert large < factor * max(small, 0.005), f"{small:.3f}s -> {large:.3f}s"
