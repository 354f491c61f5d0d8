"""The llama.cpp sequence-state codec on real states of the real default model, and the
`memctl bench kv` command in its quick mode."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memory.llm.generator import GeneratorError
from memory.llm.state_codec import (
    LOSSLESS,
    MAGIC,
    CodecError,
    Settings,
    decode,
    encode,
    parse,
)

PROMPT = ("Exceptions are a means of breaking out of the normal flow of control of a code "
          "block in order to handle errors or other exceptional conditions. An exception is "
          "raised at the point where the error is detected; it may be handled by the "
          "surrounding code block or by any code block that directly or indirectly invoked ")
SUFFIX = " the code block where the error occurred. The Python interpreter raises"


def kl(p_logits: np.ndarray, q_logits: np.ndarray) -> float:
    lp = p_logits - np.logaddexp.reduce(p_logits, axis=-1, keepdims=True)
    lq = q_logits - np.logaddexp.reduce(q_logits, axis=-1, keepdims=True)
    return float((np.exp(lp) * (lp - lq)).sum(-1).mean())


@pytest.fixture(scope="module")
def gen(models_dir: Path):
    from memory.llm.generator import load_generator

    g = load_generator(models_dir, n_ctx=512, n_seq=2)
    yield g
    g.close()


@pytest.fixture(scope="module")
def saved(gen):
    """(state after PROMPT, logits of SUFFIX evaluated on top of it, the tokens)."""
    prompt, suffix = gen.tokenize(PROMPT), gen.tokenize(SUFFIX, bos=False)
    gen.clear()
    gen.eval(prompt)
    state = gen.get_state(0)
    logits = gen.eval(suffix, all_logits=True)
    gen.clear()
    return state, logits, prompt, suffix


def restored_logits(gen, state: bytes, suffix: list[int]) -> np.ndarray:
    gen.clear()
    gen.set_state(state, 0)
    out = gen.eval(suffix, all_logits=True)
    gen.clear()
    return out


def test_parse_finds_both_caches_of_the_sliding_window_model(saved) -> None:
    state, _, prompt, _ = saved
    layout = parse(state)
    # Gemma 3 interleaves sliding-window layers: a base cache and an SWA cache, back to back.
    assert len(layout.n_cells) == 2 and layout.n_tokens == len(prompt)
    assert not layout.cell_ext
    assert {r.kind for r in layout.regions} == {"k", "v"}
    assert all(r.ggml_type == 1 and not r.transposed for r in layout.regions)  # f16, FA on
    assert sum(r.length for r in layout.regions) < len(state)


def test_lossless_restore_gives_bit_identical_logits(gen, saved) -> None:
    state, logits, _, suffix = saved
    blob = encode(state, LOSSLESS)
    assert decode(blob) == state
    assert np.array_equal(restored_logits(gen, decode(blob), suffix), logits)


def test_4bit_restore_keeps_the_layout_and_bounds_the_kl(gen, saved) -> None:
    state, logits, _, suffix = saved
    # (settings, at least this many times smaller, KL bound); mixed precision keeps 36 of
    # this short prompt's tokens verbatim, so it saves less here.
    cases = ((Settings(8, 8, False), 1.6, 0.03), (Settings(4, 4, False), 2.5, 0.05),
             (Settings(4, 4, True), 1.2, 0.05))
    for setting, ratio, bound in cases:
        blob = encode(state, setting)
        assert len(blob) * ratio < len(state)
        back = decode(blob)
        assert len(back) == len(state) and back != state
        layout = parse(back)  # the same structure, with approximate values
        assert layout == parse(state)
        got = restored_logits(gen, back, suffix)
        assert kl(logits, got) < bound
        assert int(np.argmax(got[-1])) == int(np.argmax(logits[-1]))


def test_transposed_v_without_flash_attention(models_dir: Path) -> None:
    from memory.llm.generator import load_generator

    with load_generator(models_dir, n_ctx=256, n_seq=1, flash_attn=False) as g:
        g.eval(g.tokenize(PROMPT))
        state = g.get_state(0)
        layout = parse(state)
        v = [r for r in layout.regions if r.kind == "v"]
        assert v and all(r.transposed for r in v)
        back = decode(encode(state, Settings(8, 8, False)))
        for r in v:
            a = np.frombuffer(state, np.float16, r.rows * r.cols, r.offset).astype(np.float32)
            b = np.frombuffer(back, np.float16, r.rows * r.cols, r.offset).astype(np.float32)
            # Columns are channels here: V is quantised per token, i.e. per column.
            a, b = a.reshape(r.cols, r.rows), b.reshape(r.cols, r.rows)
            span = a.max(axis=0) - a.min(axis=0)
            assert (np.abs(a - b) <= span / 255 + 1e-2).all()
        g.clear()
        g.set_state(back, 0)  # llama.cpp accepts the rebuilt state


@pytest.mark.parametrize("damage", ["garbage", "truncated", "magic", "trailing", "layers"])
def test_unknown_layouts_are_stored_losslessly(saved, damage: str) -> None:
    state = saved[0]
    bad = {
        "garbage": bytes(range(256)) * 40,
        "truncated": state[: len(state) // 2],
        "magic": b"\0\0\0\0" + state[4:],
        "trailing": state + b"\x01",
        # The layer count of the first cache, changed: no longer consistent with the data.
        "layers": _with_layer_count(state, 99),
    }[damage]
    with pytest.raises(CodecError):
        parse(bad)
    blob = encode(bad, Settings(4, 4, True))
    assert blob[:4] == b"MKV0" and decode(blob) == bad


def _with_layer_count(state: bytes, n: int) -> bytes:
    layout = parse(state)
    first_k = layout.regions[0].offset
    at = first_k - 12 - 4  # before: i32 type + u64 row size; and before those, u32 n_layer
    assert struct.unpack_from("<I", state, at)[0] == 3
    return state[:at] + struct.pack("<I", n) + state[at + 4:]


def test_non_finite_values_stay_verbatim(saved) -> None:
    state = bytearray(saved[0])
    region = parse(bytes(state)).regions[0]
    state[region.offset:region.offset + 2] = np.float16(np.inf).tobytes()
    back = decode(encode(bytes(state), Settings(4, 4, False)))
    assert back[region.offset:region.offset + region.length] == \
        bytes(state[region.offset:region.offset + region.length])
    assert back != bytes(state)  # the other regions were still compressed
    with pytest.raises(ValueError):
        Settings(3, 4)


def test_llama_cpp_rejects_a_broken_state_without_crashing(gen, saved) -> None:
    state = saved[0]
    with pytest.raises(GeneratorError):
        gen.set_state(_with_layer_count(state, 99), 0)
    with pytest.raises(GeneratorError):
        gen.set_state(struct.pack("<Ii", MAGIC, 0) + b"\x01", 0)
    assert gen.seq_len(0) == 0


def test_damaged_blobs_are_rejected(saved) -> None:
    blob = encode(saved[0], Settings(4, 4, True))
    assert blob[:4] == b"MKV1"
    for bad in (blob[:-1], blob[:100], blob[:8] + bytes([blob[8] ^ 1]) + blob[9:],
                blob[:-10] + bytes(10), b"MKV9" + blob[4:], b""):
        with pytest.raises(CodecError):
            decode(bad)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=3))
def test_mutated_states_never_crash_the_codec(saved, cuts: list[tuple[int, int]]) -> None:
    state = bytearray(saved[0][:20_000])  # the headers and the first cells are what parse reads
    for at, value in cuts:
        state[at % len(state)] = value
    data = bytes(state)
    blob = encode(data, Settings(2, 2, False))
    back = decode(blob)
    assert len(back) == len(data)
    if blob[:4] == b"MKV0":
        assert back == data


def test_bench_kv_quick_prints_the_promised_json(cli) -> None:
    r = cli("bench", "kv", "--quick", "--json", timeout=600)
    assert r.code == 0, r.stderr
    data = r.json()
    names = [row["name"] for row in data["rows"]]
    assert names[:3] == ["f16", "q8_0", "q4_0"]
    assert {"memctl-8bit", "memctl-4bit", "memctl-2bit", "memctl-4bit-mixed"} <= set(names)
    for row in data["rows"]:
        assert row["bytes_per_token"] > 0
        assert 0 <= row["greedy_agreement"] <= 1 and row["mean_kl"] >= -1e-6
    f16 = data["rows"][0]
    assert f16["mean_kl"] == 0 and f16["greedy_agreement"] == 1
    assert data["restore_speedup"] > 0 and data["rerank_speedup"] > 0
    assert data["machine"]["cores"] >= 1 and data["machine"]["cpu"]
