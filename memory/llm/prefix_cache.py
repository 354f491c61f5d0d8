"""An in-process cache of prompt-prefix states, keyed by token prefix.

A prompt that starts with tokens already evaluated once (a fixed instruction, the same
query with other candidates) restores the saved KV state of the longest cached prefix
instead of recomputing it. Entries are opaque byte blobs (compressed states from
`memory.llm.state_codec`); the cache is budgeted by their total size, evicts the least
recently used first, and is safe to share between threads. It does not know the model: use
one cache per loaded generator (and cache type), since states do not transfer between them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from memory.llm.generator import Generator, GeneratorError
from memory.llm.state_codec import CodecError, Settings, decode, encode

# Prefix states are compressed 4-bit (K per channel, V per token) with the first 4 and
# last 32 tokens kept verbatim: see README ("KV state codec") for its fidelity.
DEFAULT_SETTINGS = Settings(k_bits=4, v_bits=4, mixed=True)


@dataclass(frozen=True)
class CacheStats:
    entries: int
    bytes: int
    budget: int
    hits: int
    misses: int
    evictions: int


class PrefixCache:
    """Token prefix -> blob, at most `budget` bytes of blobs in all; `settings` is how
    `prefill` compresses the states it caches."""

    def __init__(self, budget: int, *, settings: Settings = DEFAULT_SETTINGS) -> None:
        if budget < 0:
            raise ValueError("the cache budget cannot be negative")
        self.budget = budget
        self.settings = settings
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[int, ...], bytes] = OrderedDict()
        # Entry keys by length: a lookup hashes one slice per distinct cached length.
        self._by_len: dict[int, set[tuple[int, ...]]] = {}
        self._bytes = 0
        self._hits = self._misses = self._evictions = 0

    def put(self, tokens: Sequence[int], blob: bytes) -> bool:
        """Cache `blob` for exactly `tokens`; False if it alone exceeds the budget."""
        key = tuple(tokens)
        if not key or len(blob) > self.budget:
            return False
        with self._lock:
            self._drop(key)
            self._entries[key] = blob
            self._by_len.setdefault(len(key), set()).add(key)
            self._bytes += len(blob)
            while self._bytes > self.budget:
                oldest = next(iter(self._entries))
                self._drop(oldest)
                self._evictions += 1
        return True

    def longest(self, tokens: Sequence[int], max_len: int | None = None
                ) -> tuple[int, bytes] | None:
        """(n, blob) for the longest cached prefix `tokens[:n]` with n <= `max_len` (default:
        len(tokens) - 1, so at least one token is left to evaluate for logits), or None."""
        limit = len(tokens) - 1 if max_len is None else min(max_len, len(tokens))
        with self._lock:
            for n in sorted((n for n in self._by_len if n <= limit), reverse=True):
                key = tuple(tokens[:n])
                if key in self._by_len[n]:
                    self._entries.move_to_end(key)
                    self._hits += 1
                    return n, self._entries[key]
            self._misses += 1
            return None

    def discard(self, tokens: Sequence[int]) -> None:
        with self._lock:
            self._drop(tuple(tokens))

    def __contains__(self, tokens: Sequence[int]) -> bool:
        with self._lock:
            return tuple(tokens) in self._entries

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._by_len.clear()
            self._bytes = 0

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(len(self._entries), self._bytes, self.budget, self._hits,
                              self._misses, self._evictions)

    def _drop(self, key: tuple[int, ...]) -> None:
        blob = self._entries.pop(key, None)
        if blob is None:
            return
        self._bytes -= len(blob)
        keys = self._by_len[len(key)]
        keys.discard(key)
        if not keys:
            del self._by_len[len(key)]


def prefill(gen: Generator, cache: PrefixCache | None, tokens: Sequence[int], *, seq: int = 0,
            save: Sequence[int] = (), settings: Settings | None = None,
            need_logits: bool = True) -> np.ndarray | None:
    """Evaluate `tokens` into a fresh `seq`, starting from the longest cached prefix.

    States at the lengths in `save` (checkpoints such as "end of the fixed instruction") are
    compressed with `settings` (default: the cache's own) and cached on the way. Returns the
    last token's logits, or None when `need_logits` is False and the whole of `tokens` came
    from the cache. A cached blob that cannot be restored is dropped and the prefix
    recomputed.
    """
    if settings is None:
        settings = cache.settings if cache is not None else DEFAULT_SETTINGS
    with gen.lock:
        gen.clear(seq)
        start = 0
        hit = None
        if cache is not None:
            hit = cache.longest(tokens, None if need_logits else len(tokens))
        if hit is not None:
            n, blob = hit
            try:
                gen.set_state(decode(blob), seq)
                start = n
            except (CodecError, GeneratorError):
                cache.discard(tokens[:n])  # type: ignore[union-attr]
                gen.clear(seq)
        logits = None
        points = sorted({p for p in save if start < p <= len(tokens)} | {len(tokens)})
        for p in points:
            if p > start:
                logits = gen.eval(tokens[start:p], seq=seq)
                start = p
            if cache is not None and p in save and tokens[:p] not in cache:
                cache.put(tokens[:p], encode(gen.get_state(seq), settings))
        return logits
