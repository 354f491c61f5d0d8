"""The runtime interface every embedding backend implements."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

# Most embedding contexts that run at once (one single-threaded llama.cpp context each), and
# so most query embeddings recall overlaps with its other work.
MAX_CONTEXTS = 4


def usable_cores() -> int:
    """The cores this process may run on (its affinity where the OS has one)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, cores or 1)


def default_contexts() -> int:
    """One embedding context per core this process may run on, at most MAX_CONTEXTS."""
    return min(MAX_CONTEXTS, usable_cores())


class EmbedderError(Exception):
    """A problem with the embedding model the user can act on; the message is one line."""


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit-length vectors; cosine similarity is then a dot product."""

    @property
    def dim(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Return a (len(texts), dim) float32 array with L2-normalised rows."""
        ...
