"""`memctl bench kv`."""

from __future__ import annotations


def kv() -> None:
    """(not yet implemented)"""
    raise NotImplementedError
