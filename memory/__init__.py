"""memctl: local-first memory for coding agents."""

import os

# OpenBLAS's idle threads spin for about 0.1 s after every matrix product: after each recall
# they held the second core, which the next recall's query embedding now runs on while the
# text channels run on the first (memory.recall). With a short timeout they sleep at once.
# OpenBLAS reads it when numpy loads, so it is set here, before any memctl module imports
# numpy; a value set by the user is kept.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
