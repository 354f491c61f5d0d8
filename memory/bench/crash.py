"""`memctl bench crash`."""

from __future__ import annotations


def crash() -> None:
    """(not yet implemented)"""
    raise NotImplementedError
