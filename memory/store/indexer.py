"""Build or maintain a table's ANN index in a process of its own.

A build takes seconds to minutes (406 s at 100,000 rows). In a thread of the process that
asked for it, a short-lived command either waited for it at exit or left Lance's native code
running under interpreter shutdown, which aborts ("FATAL: exception not rethrown"). The
builder process outlives its parent instead, at low CPU priority. It inherits the build lock
already held (an flock belongs to the open file, which parent and child share), so there is no
moment when another process could start a second build; it never takes the write lock, so a
hard erase holding that lock while it waits for the build cannot deadlock with it.

    python -m memory.store.indexer LANCE_DIR LOCK_FD
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from memory.store.table import MAX_INDEX_DELTAS, MemoryTable

NICE = 10


def maintain(table: MemoryTable) -> None:
    """Build the vector index, or add missing filter indexes and merge too many deltas."""
    deltas = table.vector_index_deltas()
    if not deltas:
        table.build_vector_index()
        return
    table.build_filter_indexes()
    if deltas > MAX_INDEX_DELTAS:
        table.merge_vector_index()


def spawn(lance_dir: Path, lock_fd: int) -> subprocess.Popen[bytes]:
    """Start the builder on `lance_dir`, handing it `lock_fd` (the caller then closes its
    copy; the lock stays held until the builder exits)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "memory.store.indexer", str(lance_dir), str(lock_fd)],
        pass_fds=(lock_fd,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)
    # Reaped in the background, so a long-lived server leaves no zombie behind.
    threading.Thread(target=proc.wait, name="memctl-index-reaper", daemon=True).start()
    return proc


def main(argv: list[str]) -> int:
    lance_dir, lock_fd = Path(argv[0]), int(argv[1])
    os.nice(NICE)  # recall in the other processes comes first
    try:
        maintain(MemoryTable(lance_dir))
    except Exception:  # best effort: search stays exact, and the next write retries
        return 1
    finally:
        os.close(lock_fd)  # the last descriptor of the lock's file: releases it
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
