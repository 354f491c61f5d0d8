"""Errors a person or an MCP client is meant to read: one line, no traceback."""


class MemctlError(Exception):
    """Base for every expected failure; its message is shown as is."""


class InputError(MemctlError):
    """Bad input: empty text, unknown kind, malformed id, oversize payload..."""


class NotFound(MemctlError):
    """No memory with that id in this project."""
