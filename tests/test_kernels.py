"""KV-cache quantisation kernels: bit packing, groupwise quantisation, mixed precision, format."""

from __future__ import annotations

import math
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from kernels import mixed, quant, serial
from kernels.pack import pack_bits, packed_size, unpack_bits

SETTINGS = settings(deadline=None, max_examples=150)
F16_MAX = float(np.finfo(np.float16).max)


def exact_error(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """|x - y| in float64 (exact for float16/float32 inputs this close together)."""
    return np.abs(x.astype(np.float64) - y.astype(np.float64))


def assert_within_bound(x: np.ndarray, q: quant.Quantized) -> np.ndarray:
    y = quant.dequantize(q)
    assert y.dtype == np.float32 and y.shape == x.shape
    err, bound = exact_error(x, y), quant.error_bound(q)
    assert bound.shape == x.shape
    worst = np.unravel_index(np.argmax(err - bound), x.shape) if x.size else None
    assert (err <= bound).all(), f"error {err[worst]} > bound {bound[worst]} at {worst}"
    return err


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit-for-bit equality (tells -0.0 from 0.0)."""
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def normal(shape: tuple[int, int], dtype: type = np.float16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# --- bit packing ----------------------------------------------------------------------


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("count", [0, 1, 2, 3, 5, 7, 8, 9, 1001])
def test_pack_round_trip_every_width_and_odd_counts(bits: int, count: int) -> None:
    codes = np.random.default_rng(count).integers(0, 1 << bits, count).astype(np.uint8)
    packed = pack_bits(codes, bits)
    assert packed.dtype == np.uint8 and packed.shape == (math.ceil(count * bits / 8),)
    assert packed.shape == (packed_size(count, bits),)
    assert same_bits(unpack_bits(packed, bits, count), codes)


@SETTINGS
@given(bits=st.sampled_from([2, 4, 8]), data=st.data())
def test_pack_round_trip_any_codes(bits: int, data: st.DataObject) -> None:
    codes = data.draw(
        hnp.arrays(np.uint8, st.integers(0, 300), elements=st.integers(0, (1 << bits) - 1))
    )
    assert same_bits(unpack_bits(pack_bits(codes, bits), bits, codes.size), codes)


def test_pack_layout_is_low_bits_first() -> None:
    # The stored format depends on this layout, so pin it down.
    assert pack_bits(np.array([1, 2, 3], np.uint8), 4).tolist() == [0x21, 0x03]
    assert pack_bits(np.array([1, 2, 3, 0, 1], np.uint8), 2).tolist() == [0b00111001, 0b01]
    assert pack_bits(np.array([7, 255], np.uint8), 8).tolist() == [7, 255]


def test_pack_and_unpack_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="fit in 2 bits"):
        pack_bits(np.array([0, 4], np.uint8), 2)
    with pytest.raises(ValueError, match="bits must be one of"):
        pack_bits(np.array([0], np.uint8), 3)
    with pytest.raises(ValueError, match="uint8"):
        pack_bits(np.array([0, 1], np.int64), 4)
    with pytest.raises(ValueError, match="need 2 bytes"):
        unpack_bits(np.zeros(3, np.uint8), 4, 3)
    with pytest.raises(ValueError, match="padding"):
        unpack_bits(np.array([0x00, 0xF0], np.uint8), 4, 3)


# --- groupwise quantisation -------------------------------------------------------------


def float_arrays(dtype: type, max_side: int = 24) -> st.SearchStrategy[np.ndarray]:
    width = 16 if dtype is np.float16 else 32
    specials = [0.0, -0.0, 1.0, -1.0, 2.0**-24, -(2.0**-24), 6.1e-5, 65504.0, -65504.0]
    if dtype is np.float32:
        specials += [1e-45, 1e38, -3.4e38, 1.0000001]
    elements = st.one_of(
        st.floats(allow_nan=False, allow_infinity=False, width=width),
        st.sampled_from(specials),
    )
    shapes = hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=max_side)
    return hnp.arrays(dtype, shapes, elements=elements)


@SETTINGS
@given(
    x=st.one_of(float_arrays(np.float16), float_arrays(np.float32)),
    bits=st.sampled_from([2, 4, 8]),
    group=st.integers(1, 17),
    axis=st.sampled_from([0, 1]),
    wide_params=st.booleans(),
)
def test_dequantised_values_stay_within_the_bound(
    x: np.ndarray, bits: int, group: int, axis: int, wide_params: bool
) -> None:
    q = quant.quantize(x, bits, group, axis, param_dtype="float32" if wide_params else None)
    assert q.scale.shape == quant.param_shape(x.shape, group, axis)
    assert_within_bound(x, q)


@SETTINGS
@given(
    base=st.floats(-6e4, 6e4, width=32),
    step=st.sampled_from([1e-7, 1e-5, 1e-3, 0.1]),
    offsets=hnp.arrays(np.int32, (12, 10), elements=st.integers(0, 40)),
    bits=st.sampled_from([2, 4, 8]),
    axis=st.sampled_from([0, 1]),
)
def test_tiny_ranges_far_from_zero_stay_within_the_bound(
    base: float, step: float, offsets: np.ndarray, bits: int, axis: int
) -> None:
    # float16 parameters cannot sit exactly on such data; the outward rounding must hold.
    x = (np.float64(base) + offsets * step).astype(np.float32)
    assert_within_bound(x, quant.quantize(x, bits, 8, axis))


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("axis", [0, 1])
def test_the_bound_is_tight_on_midpoints(bits: int, axis: int) -> None:
    # Each group spans an exact float16 grid and holds every grid point and every midpoint
    # between them: the worst case of rounding to nearest.
    levels = (1 << bits) - 1
    rng = np.random.default_rng(bits)
    n_groups = 40
    # Coarse binary fractions, so that every point below is exact in float32.
    zero = np.round(rng.uniform(-8, 8, n_groups) * 64) / 64
    scale = np.round(rng.uniform(0.01, 0.5, n_groups) * 4096) / 4096
    ticks = np.arange(2 * levels + 1) / 2  # 0, 0.5, 1, ..., levels
    groups = (zero[:, None] + ticks * scale[:, None]).astype(np.float32)
    x = groups if axis == 1 else np.ascontiguousarray(groups.T)
    q = quant.quantize(x, bits, ticks.size, axis)
    assert (q.zero.reshape(-1) == zero).all() and (q.scale.reshape(-1) == scale).all()
    err = assert_within_bound(x, q)
    worst = err.max(axis=axis)  # per group
    bound = quant.group_error_bound(q).reshape(-1)
    assert (worst == scale / 2).all()  # the half-step error really happens
    assert (bound - worst <= 1e-3 * scale).all()  # and the bound claims barely more


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
@pytest.mark.parametrize("axis", [0, 1])
def test_constant_groups_are_exact(dtype: type, axis: int) -> None:
    x = np.repeat(np.array([[0.1, -3.5, 0.0, 65504, 2.0**-24, -0.0]]), 40, axis=0)
    x = x.astype(np.float16).astype(dtype)  # representable in the float16 parameters
    x = x if axis == 0 else np.ascontiguousarray(x.T)
    for bits in (2, 4, 8):
        q = quant.quantize(x, bits, 8, axis)
        assert (q.scale == 0).all()
        assert (quant.dequantize(q) == x).all()
        assert (quant.error_bound(q) <= np.spacing(np.float32(65504)) / 2).all()


@pytest.mark.parametrize("axis", [0, 1])
def test_ragged_last_group(axis: int) -> None:
    x = normal((37, 45), np.float32, seed=3)
    q = quant.quantize(x, 4, 16, axis)
    assert q.scale.shape == ((3, 45) if axis == 0 else (37, 3))
    assert_within_bound(x, q)
    # The short last group gets its own range: a huge value there leaves the others alone.
    y = x.copy()
    if axis == 0:
        y[-1, :] = 1000
    else:
        y[:, -1] = 1000
    qy = quant.quantize(y, 4, 16, axis)
    full = (slice(0, 2), slice(None)) if axis == 0 else (slice(None), slice(0, 2))
    assert same_bits(qy.scale[full], q.scale[full])


def test_large_ranges_pick_wide_parameters() -> None:
    fp16 = np.array([[-65504.0, 65504.0, 0.0, 1.0]] * 8, np.float16)
    for bits in (2, 4, 8):
        q = quant.quantize(fp16, bits, 4, 1)
        assert q.scale.dtype == np.float16
        assert_within_bound(fp16, q)
    huge = normal((16, 16), np.float32) * np.float32(1e37)
    q = quant.quantize(huge, 4, 8, 0)
    assert q.scale.dtype == np.float32  # float16 parameters cannot hold these
    assert_within_bound(huge, q)
    with pytest.raises(ValueError, match="float16 range"):
        quant.quantize(huge, 4, 8, 0, param_dtype="float16")


def test_error_falls_with_more_bits() -> None:
    x = normal((512, 64), np.float16, seed=7)
    for axis in (0, 1):
        mean = {
            b: exact_error(x, quant.dequantize(quant.quantize(x, b, 32, axis))).mean()
            for b in (2, 4, 8)
        }
        # Each step shrinks the grid step by 5x (2 -> 4 bits) and 17x (4 -> 8 bits).
        assert mean[8] * 8 < mean[4] and mean[4] * 3 < mean[2], mean


def test_per_channel_groups_suit_outlier_channels() -> None:
    # Keys have a few channels of much larger magnitude; grouping along tokens keeps them
    # from stretching every other channel's range (the reason K is quantised per channel).
    keys = normal((256, 64), np.float32, seed=11)
    keys[:, ::16] *= 40
    err = {
        axis: exact_error(keys, quant.dequantize(quant.quantize(keys, 4, 32, axis))).mean()
        for axis in (0, 1)
    }
    assert err[0] * 3 < err[1], err


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("axis", [0, 1])
def test_non_finite_values_are_rejected(bad: float, axis: int) -> None:
    x = normal((20, 20), np.float32)
    x[13, 7] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        quant.quantize(x, 4, 8, axis)
    with pytest.raises(ValueError, match="NaN or infinite"):
        quant.quantize(x.astype(np.float16), 4, 8, axis)


@pytest.mark.parametrize(
    ("x", "kwargs", "message"),
    [
        (np.zeros(8, np.float32), {}, "2-D"),
        (np.zeros((2, 2, 2), np.float32), {}, "2-D"),
        (np.zeros((4, 4), np.float64), {}, "float16 or float32"),
        (np.zeros((4, 4), np.int8), {}, "float16 or float32"),
        ([[1.0, 2.0]], {}, "numpy array"),
        (np.zeros((4, 4), np.float32), {"bits": 3}, "bits"),
        (np.zeros((4, 4), np.float32), {"group": 0}, "group"),
        (np.zeros((4, 4), np.float32), {"axis": 2}, "axis"),
        (np.zeros((4, 4), np.float32), {"param_dtype": "int8"}, "param_dtype"),
    ],
)
def test_bad_arguments_are_value_errors(x: object, kwargs: dict, message: str) -> None:
    args = {"bits": 4, "group": 2, "axis": 0, **kwargs}
    with pytest.raises(ValueError, match=message):
        quant.quantize(x, args.pop("bits"), args.pop("group"), args.pop("axis"), **args)


def test_empty_input() -> None:
    for axis in (0, 1):
        q = quant.quantize(np.zeros((0, 8), np.float16), 4, 32, axis)
        assert quant.dequantize(q).shape == (0, 8)
        assert quant.error_bound(q).shape == (0, 8)
        back = serial.from_bytes(serial.to_bytes(q))
        assert isinstance(back, quant.Quantized) and back.shape == (0, 8)


# --- mixed precision ----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("axis", [0, 1])
def test_sink_and_window_tokens_are_bit_exact(dtype: type, bits: int, axis: int) -> None:
    x = normal((150, 48), dtype, seed=bits)
    x[1, 3], x[-2, 5] = -0.0, 2.0**-24  # bits that a float round trip could lose
    c = mixed.compress(x, bits, axis=axis, group=32, sink=4, window=32)
    y = mixed.decompress(c)
    assert y.dtype == x.dtype and y.shape == x.shape
    assert same_bits(y[:4], x[:4]) and same_bits(y[-32:], x[-32:])
    assert not same_bits(y[4:-32], x[4:-32])  # the middle really was quantised
    err, bound = exact_error(x, y), mixed.error_bound(c)
    assert (err <= bound).all()
    assert (bound[:4] == 0).all() and (bound[-32:] == 0).all()


@SETTINGS
@given(
    x=st.one_of(float_arrays(np.float16, 40), float_arrays(np.float32, 40)),
    bits=st.sampled_from([2, 4, 8, 16]),
    axis=st.sampled_from([0, 1]),
    group=st.integers(1, 12),
    sink=st.integers(0, 6),
    window=st.integers(0, 12),
)
def test_mixed_round_trip_any_split(
    x: np.ndarray, bits: int, axis: int, group: int, sink: int, window: int
) -> None:
    c = mixed.compress(x, bits, axis=axis, group=group, sink=sink, window=window)
    y = mixed.decompress(c)
    n_head, n_mid, n_tail = mixed.split_sizes(x.shape[0], sink, window)
    assert n_head + n_mid + n_tail == x.shape[0]
    assert same_bits(y[:n_head], x[:n_head])
    assert same_bits(y[x.shape[0] - n_tail :], x[x.shape[0] - n_tail :])
    assert (exact_error(x, y) <= mixed.error_bound(c)).all()
    if bits == 16:
        assert same_bits(y, x)


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_sixteen_bits_is_lossless(dtype: type) -> None:
    x = normal((70, 20), dtype)
    x[5, 5], x[50, 2] = -0.0, np.finfo(dtype).smallest_subnormal
    c = mixed.compress(x, 16, axis=0)
    assert not isinstance(c.middle, quant.Quantized)
    assert same_bits(mixed.decompress(c), x)
    assert (mixed.error_bound(c) == 0).all()


def test_short_caches_stay_verbatim() -> None:
    x = normal((30, 16), np.float16)
    for sink, window in ((4, 32), (40, 0), (0, 30)):
        c = mixed.compress(x, 2, axis=1, sink=sink, window=window)
        assert c.middle.shape == (0, 16)
        assert same_bits(mixed.decompress(c), x)


def test_float16_extremes_never_overflow() -> None:
    # The grid's top can land past 65504; a float16 output must still be finite.
    x = np.tile(np.array([[65504.0], [-65504.0], [65504.0], [-1.0]], np.float16), (10, 8))
    for axis in (0, 1):
        c = mixed.compress(x, 2, axis=axis, sink=0, window=0)
        y = mixed.decompress(c)
        assert np.isfinite(y).all()
        assert (exact_error(x, y) <= mixed.error_bound(c)).all()


def test_mixed_rejects_bad_input() -> None:
    x = normal((64, 8), np.float32)
    with pytest.raises(ValueError, match="bits"):
        mixed.compress(x, 3, axis=0)
    with pytest.raises(ValueError, match="sink"):
        mixed.compress(x, 4, axis=0, sink=-1)
    with pytest.raises(ValueError, match="window"):
        mixed.compress(x, 4, axis=0, window=1.5)  # type: ignore[arg-type]
    for bits in (4, 16):
        for row in (0, 30, 63):  # head, middle, tail
            y = x.copy()
            y[row, 2] = np.nan
            with pytest.raises(ValueError, match="NaN or infinite"):
                mixed.compress(y, bits, axis=1)


# --- serialisation ------------------------------------------------------------------------


def samples() -> list[quant.Quantized | mixed.Compressed]:
    x16, x32 = normal((45, 20), np.float16, seed=1), normal((45, 20), np.float32, seed=2)
    objs: list[quant.Quantized | mixed.Compressed] = [
        quant.quantize(x16, 2, 7, 0),
        quant.quantize(x32, 4, 8, 1, param_dtype="float32"),
        quant.quantize(x32 * np.float32(1e36), 8, 16, 0),
    ]
    for bits in (2, 4, 8, 16):
        objs.append(mixed.compress(x16, bits, axis=0, group=8, sink=3, window=10))
        objs.append(mixed.compress(x32, bits, axis=1, group=6, sink=0, window=5))
    objs.append(mixed.compress(x16[:5], 4, axis=0))  # all verbatim
    return objs


def assert_same(a: object, b: object) -> None:
    assert type(a) is type(b)
    if isinstance(a, np.ndarray):
        assert same_bits(a, b)  # type: ignore[arg-type]
        return
    for name in a.__dataclass_fields__:  # type: ignore[attr-defined]
        va, vb = getattr(a, name), getattr(b, name)
        if isinstance(va, quant.Quantized | np.ndarray):
            assert_same(va, vb)
        else:
            assert va == vb, name


def test_serial_round_trip_is_exact() -> None:
    for obj in samples():
        data = serial.to_bytes(obj)
        back = serial.from_bytes(data)
        assert_same(back, obj)
        assert serial.to_bytes(back) == data
        assert serial.nbytes(obj) == len(data)
        if isinstance(obj, mixed.Compressed):
            assert same_bits(mixed.decompress(back), mixed.decompress(obj))
        else:
            assert same_bits(quant.dequantize(back), quant.dequantize(obj))


def test_truncated_data_is_rejected() -> None:
    for obj in samples()[:4]:
        data = serial.to_bytes(obj)
        for cut in range(len(data)):
            with pytest.raises(ValueError):
                serial.from_bytes(data[:cut])


def test_every_corrupted_byte_is_rejected() -> None:
    for obj in (samples()[0], samples()[4]):
        data = bytearray(serial.to_bytes(obj))
        for pos in range(len(data)):
            for flip in (0x01, 0x80):
                bad = data.copy()
                bad[pos] ^= flip
                with pytest.raises(ValueError):
                    serial.from_bytes(bytes(bad))


def reseal(body: bytes) -> bytes:
    """Recompute the checksum, to reach the validation that sits behind it."""
    return body + struct.pack("<I", zlib.crc32(body))


def patched(data: bytes, at: int, new: bytes) -> bytes:
    return data[:at] + new + data[at + len(new) :]


def test_consistent_checksums_do_not_excuse_bad_content() -> None:
    q = quant.quantize(normal((9, 3), np.float32), 4, 4, 0)  # 27 codes: half a byte spare
    body = serial.to_bytes(q)[:-4]
    # Offsets: 6-byte prefix, then bits, axis, dtype, pad, group, rows, cols, then codes.
    cols_at, codes_at = 18, 22
    last_code = codes_at + packed_size(27, 4) - 1
    scale_at = last_code + 1
    cases = {
        "magic": patched(body, 0, b"XXXX"),
        "version": patched(body, 4, b"\x09"),
        "kind": patched(body, 5, b"\x07"),
        "bit width": patched(body, 6, b"\x03"),
        "truncated": patched(body, cols_at, struct.pack("<I", 10)),
        "trailing": body + b"\0",
        "padding": patched(body, last_code, bytes([body[last_code] | 0xF0])),
        "negative": patched(body, scale_at, np.float16(-1).tobytes()),
        "non-finite": patched(body, scale_at, np.float16(np.inf).tobytes()),
    }
    for message, bad in cases.items():
        with pytest.raises(ValueError, match=message):
            serial.from_bytes(reseal(bad))


@SETTINGS
@given(st.binary(max_size=200))
def test_random_bytes_are_rejected(data: bytes) -> None:
    with pytest.raises(ValueError):
        serial.from_bytes(data)
    with pytest.raises(ValueError):
        serial.from_bytes(b"MKVQ\x01\x01" + data)


def test_serialising_other_objects_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        serial.to_bytes(np.zeros((2, 2)))  # type: ignore[arg-type]


# --- bytes accounting ---------------------------------------------------------------------


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("axis", [0, 1])
def test_bytes_per_value_is_bits_over_eight_plus_group_overhead(bits: int, axis: int) -> None:
    tokens, channels, group = 1024, 128, 32
    values = tokens * channels
    q = quant.quantize(normal((tokens, channels)), bits, group, axis)
    # 6-byte prefix + 4-byte CRC + 16-byte header, then codes, then a float16 scale and
    # zero (4 bytes) per group of 32 values.
    assert serial.nbytes(q) == 26 + values * bits // 8 + values // group * 4
    assert serial.nbytes(q) / values == pytest.approx(bits / 8 + 4 / group, abs=1e-3)
    assert len(serial.to_bytes(q)) == serial.nbytes(q)


@pytest.mark.parametrize("bits", [2, 4, 8, 16])
def test_bytes_per_token_of_a_mixed_cache(bits: int) -> None:
    tokens, channels, sink, window = 1024, 192, 4, 32
    c = mixed.compress(normal((tokens, channels)), bits, axis=1, sink=sink, window=window)
    dense = (sink + window) * channels * 2
    middle = (tokens - sink - window) * channels
    if bits == 16:
        expected = 6 + 4 + 24 + dense + middle * 2
    else:
        expected = 6 + 4 + 24 + dense + 16 + middle * bits // 8 + middle // 32 * 4
    assert serial.nbytes(c) == expected == len(serial.to_bytes(c))
