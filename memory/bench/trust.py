"""`memctl bench trust`."""

from __future__ import annotations


def trust() -> None:
    """(not yet implemented)"""
    raise NotImplementedError
