"""Make arbitrary input safe to store: valid UTF-8, no NUL or stray control characters."""

from __future__ import annotations

import re
import unicodedata

from memory.errors import InputError

MAX_TEXT_CHARS = 32_000
MAX_TAGS = 32
MAX_TAG_CHARS = 64
MAX_FILES = 64
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(value: object, what: str = "text", limit: int = MAX_TEXT_CHARS) -> str:
    if not isinstance(value, str):
        raise InputError(f"{what} must be a string, not {type(value).__name__}")
    if _SURROGATE.search(value):
        # Surrogates (from bad JSON, or undecodable bytes in argv and file names) cannot be
        # stored: a valid pair becomes its character, a lone one U+FFFD.
        value = value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    text = _CONTROL.sub("", value.replace("\r\n", "\n").replace("\r", "\n"))
    text = unicodedata.normalize("NFC", text).strip()
    if not text:
        raise InputError(f"{what} is empty")
    if len(text) > limit:
        raise InputError(
            f"{what} is {len(text):,} characters; the limit is {limit:,} "
            "(store a summary, or split it into several memories)"
        )
    return text


def clean_tags(values: object) -> list[str]:
    tags: list[str] = []
    for value in _as_list(values, "tags"):
        tag = clean_text(value, "tag", MAX_TAG_CHARS).lower()
        if tag not in tags:
            tags.append(tag)
    if len(tags) > MAX_TAGS:
        raise InputError(f"at most {MAX_TAGS} tags")
    return tags


def clean_files(values: object) -> list[str]:
    files: list[str] = []
    for value in _as_list(values, "files"):
        path = clean_text(value, "file path", 1024)
        if path not in files:
            files.append(path)
    if len(files) > MAX_FILES:
        raise InputError(f"at most {MAX_FILES} files")
    return files


def _as_list(values: object, what: str) -> list[object]:
    if values is None:
        return []
    if isinstance(values, str):
        return [values]
    if isinstance(values, list | tuple):
        return list(values)
    raise InputError(f"{what} must be a list of strings")
