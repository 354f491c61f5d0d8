"""Groupwise asymmetric quantisation of one layer's K or V cache, shaped [n_tokens, n_channels].

Each group of ``group`` consecutive values gets its own offset ``zero`` (<= the group's
minimum) and step ``scale``; a value is stored as the nearest code ``c`` in 0..2**bits-1 and
read back as ``zero + c * scale``. ``axis=0`` runs groups along the tokens of each channel
("K per channel", as in KIVI: keys have outlier channels, so each channel gets its own
range); ``axis=1`` runs groups along the channels of each token ("V per token"). A ragged
last group is simply shorter.

The parameters are rounded *outwards* when stored (``zero`` down, ``scale`` up, so that
``zero + (2**bits - 1) * scale`` still reaches the group's maximum). Every value therefore
lies inside its group's grid and `error_bound` is a proven per-element bound, not an estimate:

- float16 parameters (the default; 4 bytes per group): codes and reconstruction are computed
  in float32. ``c * scale`` is exact there (<= 8 + 11 significant bits), so the
  reconstruction is rounded once, by at most half a float32 ulp of the group's largest
  magnitude ``M = max(|zero|, |zero + (2**bits-1) * scale|)``. Choosing the code from
  ``(x - zero) / scale`` costs two float32 roundings, i.e. less than ``2**(bits-23)`` of a
  step. Bound: ``scale * (1/2 + 2**(bits-23)) + ulp32(M) / 2``.
- float32 parameters (used automatically when a value exceeds the float16 range, or on
  request; 8 bytes per group): computed in float64, then rounded to float32. Bound:
  ``scale * (1/2 + 2**(bits-52)) + ulp32(M) + M * 2**-51``.

A constant group whose value is representable in the parameter dtype gets ``scale = 0`` and
is reproduced exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kernels.pack import check_bits, pack_bits, packed_size, unpack_bits

FLOATS = (np.dtype(np.float16), np.dtype(np.float32))
F16_MAX = float(np.finfo(np.float16).max)
F32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True, eq=False)
class Quantized:
    """One quantised [n_tokens, n_channels] array; see the module docstring for the maths.

    ``packed`` holds the codes of all values in row-major order (`kernels.pack` layout).
    ``scale`` and ``zero`` are 2-D, one entry per group: ``[ceil(T/group), C]`` for
    ``axis=0`` and ``[T, ceil(C/group)]`` for ``axis=1``; float16 or float32.
    """

    bits: int
    group: int
    axis: int
    shape: tuple[int, int]
    packed: np.ndarray
    scale: np.ndarray
    zero: np.ndarray


def param_shape(shape: tuple[int, int], group: int, axis: int) -> tuple[int, int]:
    """Shape of the per-group ``scale``/``zero`` arrays for an input of ``shape``."""
    rows, cols = shape
    if axis == 0:
        return (-(-rows // group), cols)
    return (rows, -(-cols // group))


def check_array(x: np.ndarray) -> np.ndarray:
    """A 2-D float16/float32 array, or ValueError."""
    if not isinstance(x, np.ndarray):
        raise ValueError(f"expected a numpy array, got {type(x).__name__}")
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D [n_tokens, n_channels] array, got shape {x.shape}")
    if x.dtype not in FLOATS:
        raise ValueError(f"expected float16 or float32 values, got {x.dtype}")
    return x


def check_layout(group: int, axis: int) -> None:
    if isinstance(group, bool) or not isinstance(group, int | np.integer) or group < 1:
        raise ValueError(f"group must be a positive integer, got {group!r}")
    if axis not in (0, 1):
        raise ValueError(
            f"axis must be 0 (groups along tokens) or 1 (along channels), got {axis!r}"
        )


def check_quantized(q: Quantized) -> None:
    """Structural consistency of a `Quantized` (shapes, dtypes, finite parameters)."""
    check_bits(q.bits)
    check_layout(q.group, q.axis)
    if len(q.shape) != 2 or min(q.shape) < 0:
        raise ValueError(f"bad shape {q.shape!r}")
    rows, cols = q.shape
    if q.packed.dtype != np.uint8 or q.packed.shape != (packed_size(rows * cols, q.bits),):
        raise ValueError("packed codes do not match the shape and bit width")
    want = param_shape(q.shape, q.group, q.axis)
    for name, arr in (("scale", q.scale), ("zero", q.zero)):
        if arr.dtype not in FLOATS or arr.shape != want or arr.dtype != q.scale.dtype:
            raise ValueError(f"{name} must be float16/float32 shaped {want}")
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} holds a non-finite value")
    if (q.scale < 0).any():
        raise ValueError("scale holds a negative value")


def _grouped(a: np.ndarray, group: int, axis: int) -> np.ndarray:
    """View ``a`` as 3-D with each group on its own run: [G, group, C] or [T, G, group].

    A ragged last group is padded by repeating its last value, which changes neither its
    minimum nor its maximum; the padding is dropped again by `_ungroup`.
    """
    pad = (-a.shape[axis]) % group
    if pad:
        widths = [(0, 0), (0, 0)]
        widths[axis] = (0, pad)
        a = np.pad(a, widths, mode="edge")
    rows, cols = a.shape
    if axis == 0:
        return a.reshape(rows // group, group, cols)
    return a.reshape(rows, cols // group, group)


def _ungroup(g: np.ndarray, shape: tuple[int, int], axis: int) -> np.ndarray:
    rows, cols = shape
    if axis == 0:
        return np.ascontiguousarray(g.reshape(-1, cols)[:rows])
    return np.ascontiguousarray(g.reshape(rows, -1)[:, :cols])


def _fold(a: np.ndarray, fn: np.ufunc) -> np.ndarray:
    """``fn`` (np.minimum or np.maximum) reduced over the last axis of ``a``.

    NumPy reduces many short contiguous runs slowly, so halves are combined elementwise
    first and the last few columns one at a time; about 3x faster than ``fn.reduce``.
    """
    while a.shape[-1] > 8 and a.shape[-1] % 2 == 0:
        half = a.shape[-1] // 2
        a = fn(a[..., :half], a[..., half:])
    out = np.array(a[..., 0])
    for col in range(1, a.shape[-1]):
        fn(out, a[..., col], out=out)
    return out


def _group_range(g: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-group minimum and maximum of a `_grouped` array (NaN propagates)."""
    if axis == 0:
        return g.min(axis=1), g.max(axis=1)
    return _fold(g, np.minimum), _fold(g, np.maximum)


def _round_to(v: np.ndarray, dtype: type, direction: float) -> np.ndarray:
    """``v`` rounded to ``dtype`` towards ``direction`` (-inf: down, +inf: up)."""
    r = v.astype(dtype)
    wrong = r.astype(v.dtype) < v if direction > 0 else r.astype(v.dtype) > v
    if wrong.any():
        r[wrong] = np.nextafter(r[wrong], dtype(direction))
    return r


def _choose_param_dtype(lo: float, hi: float, requested: object) -> np.dtype:
    fits16 = lo >= -F16_MAX and hi <= F16_MAX
    if requested is None:
        return FLOATS[0] if fits16 else FLOATS[1]
    dtype = np.dtype(requested)  # type: ignore[call-overload]
    if dtype not in FLOATS:
        raise ValueError(f"param_dtype must be float16 or float32, got {dtype}")
    if dtype == FLOATS[0] and not fits16:
        raise ValueError("values exceed the float16 range; use param_dtype=float32")
    return dtype


def _params16(lo: np.ndarray, hi: np.ndarray, levels: int) -> tuple[np.ndarray, np.ndarray]:
    zero = _round_to(lo, np.float16, -np.inf)
    z64, hi64 = zero.astype(np.float64), hi.astype(np.float64)
    scale = _round_to((hi64 - z64) / levels, np.float16, np.inf)
    # zero + levels * scale is exact in float64 (both terms live within 2**-24..2**24), so
    # this check is exact; the division above may have rounded just below the needed step.
    for _ in range(4):
        short = z64 + levels * scale.astype(np.float64) < hi64
        if not short.any():
            return scale, zero
        scale[short] = np.nextafter(scale[short], np.float16(np.inf))
    raise AssertionError("float16 scale did not converge")  # unreachable: one step suffices


def _params32(lo: np.ndarray, hi: np.ndarray, levels: int) -> tuple[np.ndarray, np.ndarray]:
    # The 2**-50 margin outweighs the float64 roundings of the difference and the division,
    # so zero + levels * scale >= hi holds exactly, not just after rounding.
    step = (hi.astype(np.float64) - lo.astype(np.float64)) * (1 + 2.0**-50) / levels
    return _round_to(step, np.float32, np.inf), lo.copy()


def quantize(
    x: np.ndarray, bits: int, group: int, axis: int, *, param_dtype: object = None
) -> Quantized:
    """Quantise a [n_tokens, n_channels] float16/float32 array to ``bits`` (2, 4 or 8) bits.

    ``param_dtype`` None picks float16 parameters unless a value exceeds the float16 range.
    NaN or infinite values raise ValueError.
    """
    x = check_array(x)
    check_bits(bits)
    check_layout(group, axis)
    shape = (int(x.shape[0]), int(x.shape[1]))
    levels = (1 << bits) - 1
    if x.size == 0:
        dtype = _choose_param_dtype(0.0, 0.0, param_dtype)
        empty = np.zeros(param_shape(shape, group, axis), dtype)
        return Quantized(bits, group, axis, shape, np.zeros(0, np.uint8), empty, empty.copy())
    g = _grouped(x.astype(np.float32), group, axis)  # a private copy: worked on in place
    red = axis + 1
    lo, hi = _group_range(g, axis)
    # min/max propagate NaN and expose inf, so this checks every value without another pass.
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        raise ValueError("cannot quantise NaN or infinite values")
    dtype = _choose_param_dtype(float(lo.min()), float(hi.max()), param_dtype)
    if dtype == FLOATS[0]:
        scale, zero = _params16(lo, hi, levels)
        work = np.float32
    else:
        scale, zero = _params32(lo, hi, levels)
        work = np.float64
    s = np.expand_dims(scale.astype(work), red)
    z = np.expand_dims(zero.astype(work), red)
    t = np.subtract(g, z, out=g) if work is np.float32 else np.subtract(g, z, dtype=work)
    np.divide(t, np.where(s == 0, 1, s), out=t)  # scale 0: constant group, every code is 0
    # No clipping needed: 0 <= x - zero <= levels * scale, the right side is exact in the
    # working precision and rounding is monotonic, so 0 <= t <= levels before rint.
    np.rint(t, out=t)
    codes = _ungroup(t, shape, axis).astype(np.uint8)
    return Quantized(bits, group, axis, shape, pack_bits(codes, bits), scale, zero)


def dequantize(q: Quantized) -> np.ndarray:
    """The float32 reconstruction ``zero + code * scale`` of every value, shaped ``q.shape``."""
    check_quantized(q)
    rows, cols = q.shape
    if rows * cols == 0:
        return np.zeros(q.shape, np.float32)
    codes = unpack_bits(q.packed, q.bits, rows * cols).reshape(q.shape)
    g = _grouped(codes, q.group, q.axis)
    red = q.axis + 1
    work = np.float32 if q.scale.dtype == FLOATS[0] else np.float64
    out = g * np.expand_dims(q.scale.astype(work), red)  # exact: few significant bits
    out += np.expand_dims(q.zero.astype(work), red)  # the one rounding (float16 params)
    if work is np.float64:
        np.clip(out, -F32_MAX, F32_MAX, out=out)  # true values are finite float32
        out = out.astype(np.float32)
    return _ungroup(out, q.shape, q.axis)


def binade_ulp(v: np.ndarray, dtype: type) -> np.ndarray:
    """The ``dtype`` ulp of the binade holding each value of ``v``: rounding a value of at
    most that magnitude to ``dtype`` moves it by at most half of this (float64 result).

    Taken from the exponent, not `np.spacing`, which reports inf next to the dtype's max.
    """
    info = np.finfo(dtype)
    tiny = float(info.smallest_subnormal)
    mant, exp = np.frexp(np.abs(np.asarray(v, np.float64)))  # |v| = mant * 2**exp
    ulp = np.ldexp(1.0, exp - 1 - info.nmant)
    return np.where(mant == 0, tiny, np.maximum(ulp, tiny))


def group_error_bound(q: Quantized) -> np.ndarray:
    """The proven max |x - dequantize(q)| per group (float64, shaped like ``q.scale``)."""
    check_quantized(q)
    s = q.scale.astype(np.float64)
    z = q.zero.astype(np.float64)
    top = z + ((1 << q.bits) - 1) * s
    biggest = np.maximum(np.abs(z), np.abs(top))
    ulp = binade_ulp(biggest, np.float32)
    if q.scale.dtype == FLOATS[0]:
        return s * (0.5 + 2.0 ** (q.bits - 23)) + ulp / 2
    return s * (0.5 + 2.0 ** (q.bits - 52)) + ulp + biggest * 2.0**-51


def error_bound(q: Quantized) -> np.ndarray:
    """The proven max |x - dequantize(q)| for every element (float64, shaped ``q.shape``)."""
    per_group = group_error_bound(q)
    rows, cols = q.shape
    full = np.repeat(per_group, q.group, axis=q.axis)
    return np.ascontiguousarray(full[:rows] if q.axis == 0 else full[:, :cols])
