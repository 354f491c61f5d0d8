"""The prefix cache: pure parts on byte blobs, then `prefill` on the real model."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import numpy as np
import pytest

from memory.llm.prefix_cache import PrefixCache, prefill
from memory.llm.state_codec import LOSSLESS, Settings, encode


def test_longest_prefix_wins() -> None:
    cache = PrefixCache(1000)
    cache.put([1, 2], b"a")
    cache.put([1, 2, 3, 4], b"bb")
    cache.put([1, 9, 9], b"ccc")
    assert cache.longest([1, 2, 3, 4, 5]) == (4, b"bb")
    assert cache.longest([1, 2, 3, 7]) == (2, b"a")
    assert cache.longest([1, 9, 9, 9]) == (3, b"ccc")
    assert cache.longest([2, 2, 3]) is None
    # By default one token is left over (its logits are needed); max_len lifts that.
    assert cache.longest([1, 2, 3, 4]) == (2, b"a")
    assert cache.longest([1, 2, 3, 4], max_len=4) == (4, b"bb")
    s = cache.stats()
    assert (s.hits, s.misses, s.entries, s.bytes) == (5, 1, 3, 6)


def test_budget_and_lru_eviction() -> None:
    cache = PrefixCache(10)
    cache.put([1], b"xxxx")
    cache.put([2], b"yyyy")
    assert cache.longest([1, 0]) == (1, b"xxxx")  # [1] is now the most recently used
    cache.put([3], b"zzzz")  # 12 bytes > 10: the least recently used ([2]) goes
    assert [2] not in cache and [1] in cache and [3] in cache
    assert cache.stats().bytes == 8 and cache.stats().evictions == 1
    assert not cache.put([4], b"w" * 11)  # larger than the whole budget: refused
    assert [4] not in cache and len(cache) == 2
    cache.put([1], b"x")  # replacing an entry adjusts the byte count
    assert cache.stats().bytes == 5
    cache.discard([3])
    cache.discard([3])
    assert cache.stats().bytes == 1 and len(cache) == 1
    cache.clear()
    assert len(cache) == 0 and cache.longest([1, 2]) is None


def test_empty_key_and_negative_budget() -> None:
    assert not PrefixCache(10).put([], b"x")
    with pytest.raises(ValueError):
        PrefixCache(-1)


def test_thread_safety_keeps_the_invariants() -> None:
    cache = PrefixCache(5_000)
    errors: list[BaseException] = []
    lookups = [0] * 8

    def work(seed: int) -> None:
        r = random.Random(seed)
        try:
            for _ in range(2_000):
                key = [r.randrange(4) for _ in range(r.randrange(1, 6))]
                if r.random() < 0.5:
                    cache.put(key, bytes(r.randrange(1, 200)))
                else:
                    lookups[seed] += 1
                    hit = cache.longest([*key, 0])
                    if hit is not None:
                        n, blob = hit
                        assert n <= len(key)
                        assert isinstance(blob, bytes)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and not any(t.is_alive() for t in threads)
    s = cache.stats()
    assert 0 < s.bytes <= s.budget
    assert s.hits + s.misses == sum(lookups)
    # The byte count matches what is actually held.
    assert s.bytes == sum(len(cache.longest([*k, 0], max_len=len(k))[1])
                          for k in list(cache._entries))


@pytest.fixture(scope="module")
def gen(models_dir: Path):
    from memory.llm.generator import load_generator

    g = load_generator(models_dir, n_ctx=512, n_seq=4)
    yield g
    g.close()


TEXT = ("The lighthouse keeper climbed the spiral stairs every evening to light the lamp. "
        "Ships passing the rocky coast relied on its beam to find the harbour safely. ")


def test_prefill_from_a_lossless_cache_gives_identical_logits(gen) -> None:
    tokens = gen.tokenize(TEXT * 2)
    cut = len(tokens) // 2
    gen.clear()
    expected_mid = prefill(gen, None, tokens[:cut])
    expected = gen.eval(tokens[cut:])
    cache = PrefixCache(64 << 20)
    first = prefill(gen, cache, tokens, save=(cut,), settings=LOSSLESS)
    assert tokens[:cut] in cache and cache.stats().misses == 1
    assert np.array_equal(first, expected)
    again = prefill(gen, cache, tokens, settings=LOSSLESS)  # restores [:cut], evaluates the rest
    assert cache.stats().hits == 1
    assert np.array_equal(again, expected)
    assert gen.seq_len(0) == len(tokens)
    # The whole prompt cached: without logits needed, nothing is evaluated.
    cache.put(tokens, encode(gen.get_state(0), LOSSLESS))
    assert prefill(gen, cache, tokens, need_logits=False) is None
    assert gen.seq_len(0) == len(tokens)
    assert expected_mid is not None
    gen.clear()


def test_prefill_from_a_4bit_cache_keeps_the_prediction(gen) -> None:
    tokens = gen.tokenize(TEXT * 3)
    cut = len(tokens) - 4
    gen.clear()
    expected = prefill(gen, None, tokens)
    cache = PrefixCache(64 << 20)
    prefill(gen, cache, tokens[:cut], save=(cut,), settings=Settings(4, 4, True))
    got = prefill(gen, cache, tokens)
    assert cache.stats().hits == 1
    assert int(np.argmax(got)) == int(np.argmax(expected))
    gen.clear()


def test_a_damaged_cached_blob_is_dropped_and_recomputed(gen) -> None:
    tokens = gen.tokenize(TEXT)
    gen.clear()
    expected = prefill(gen, None, tokens)
    cache = PrefixCache(1 << 20)
    cache.put(tokens[:5], b"MKV1 definitely not a state")
    assert np.array_equal(prefill(gen, cache, tokens), expected)
    assert tokens[:5] not in cache
    gen.clear()
