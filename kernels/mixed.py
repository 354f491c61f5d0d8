"""Mixed-precision compression of one layer's K or V cache, shaped [n_tokens, n_channels].

Attention leans hardest on the first few tokens (attention sinks) and on the most recent
ones, so those stay verbatim in the original dtype; only the tokens in between are
quantised (`kernels.quant`). ``bits=16`` keeps every token verbatim (lossless passthrough).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kernels.pack import BITS
from kernels.quant import (
    F16_MAX,
    Quantized,
    binade_ulp,
    check_array,
    check_layout,
    dequantize,
    quantize,
)
from kernels.quant import error_bound as quant_error_bound

LOSSLESS = 16
ALL_BITS = (*BITS, LOSSLESS)


@dataclass(frozen=True, eq=False)
class Compressed:
    """Tokens ``[0, len(head))`` and the last ``len(tail)`` verbatim; ``middle`` in between.

    ``middle`` is a `Quantized`, or a verbatim array when ``bits == 16``. ``head`` holds
    ``min(sink, T)`` tokens and ``tail`` ``min(window, T - len(head))``.
    """

    bits: int
    axis: int
    group: int
    sink: int
    window: int
    shape: tuple[int, int]
    dtype: np.dtype
    head: np.ndarray
    middle: Quantized | np.ndarray
    tail: np.ndarray


def split_sizes(rows: int, sink: int, window: int) -> tuple[int, int, int]:
    """Token counts of (head, middle, tail) for ``rows`` tokens."""
    head = min(sink, rows)
    tail = min(window, rows - head)
    return head, rows - head - tail, tail


def _check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")


def compress(
    x: np.ndarray,
    bits: int,
    *,
    axis: int,
    group: int = 32,
    sink: int = 4,
    window: int = 32,
    param_dtype: object = None,
) -> Compressed:
    """Keep the first ``sink`` and last ``window`` tokens verbatim, quantise the rest.

    ``axis=0`` quantises per channel (use for K), ``axis=1`` per token (use for V);
    ``param_dtype`` is passed to `kernels.quant.quantize`. NaN or infinite values raise
    ValueError.
    """
    x = check_array(x)
    if bits not in ALL_BITS:
        raise ValueError(f"bits must be one of {ALL_BITS}, got {bits!r}")
    check_layout(group, axis)
    _check_count("sink", sink)
    _check_count("window", window)
    rows, cols = (int(n) for n in x.shape)
    n_head, n_mid, _ = split_sizes(rows, sink, window)
    head = x[:n_head].copy()
    mid = x[n_head : n_head + n_mid]
    tail = x[n_head + n_mid :].copy()
    if bits == LOSSLESS:
        if not np.isfinite(x).all():
            raise ValueError("cannot compress NaN or infinite values")
        middle: Quantized | np.ndarray = mid.copy()
    else:
        if not (np.isfinite(head).all() and np.isfinite(tail).all()):
            raise ValueError("cannot compress NaN or infinite values")
        # quantize checks the middle's values itself.
        middle = quantize(mid, bits, group, axis, param_dtype=param_dtype)
    return Compressed(bits, axis, group, sink, window, (rows, cols), x.dtype, head, middle, tail)


def decompress(c: Compressed) -> np.ndarray:
    """The [n_tokens, n_channels] array in the original dtype; head and tail bit-exact."""
    n_head, n_mid = c.head.shape[0], c.middle.shape[0]
    out = np.empty(c.shape, c.dtype)
    out[:n_head] = c.head
    out[n_head + n_mid :] = c.tail
    mid = c.middle
    if isinstance(mid, Quantized):
        q = mid
        mid = dequantize(q)
        if c.dtype == np.float16 and _grid_top(q) > F16_MAX:
            # The grid's top may lie just past the float16 range; the true values are
            # finite float16, so clipping never moves a value away from its original.
            np.clip(mid, -F16_MAX, F16_MAX, out=mid)
    out[n_head : n_head + n_mid] = mid  # casts to the original dtype in the same pass
    return out


def _grid_top(q: Quantized) -> float:
    if q.scale.size == 0:
        return 0.0
    top = q.zero.astype(np.float64) + ((1 << q.bits) - 1) * q.scale.astype(np.float64)
    return float(top.max())


def error_bound(c: Compressed) -> np.ndarray:
    """The proven max |x - decompress(c)| per element (float64): 0 outside the middle.

    For float16 output, rounding the float32 reconstruction to float16 adds half a float16
    ulp of each reconstructed value.
    """
    rows, cols = c.shape
    out = np.zeros((rows, cols), np.float64)
    if not isinstance(c.middle, Quantized):
        return out
    bound = quant_error_bound(c.middle)
    if c.dtype == np.float16:
        bound = bound + binade_ulp(dequantize(c.middle), np.float16) / 2
    start = c.head.shape[0]
    out[start : start + c.middle.shape[0]] = bound
    return out
