"""`memctl watch`: keep doc memories in sync with the project's knowledge files."""

from __future__ import annotations


def watch() -> None:
    """Keep doc memories in sync with the project's knowledge files."""
    raise NotImplementedError
