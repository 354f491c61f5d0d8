"""A small versioned binary format for `Quantized` and `Compressed` (little-endian).

    magic  b"MKVQ" | version u8 | kind u8 (1 Quantized, 2 Compressed) | body | crc32 u32

Quantized body: header ``<BBBxIII`` (bits, axis, param dtype, group, rows, cols), then the
packed codes, ``scale`` and ``zero``; every length follows from the header.
Compressed body: header ``<BBBxIIIII`` (bits, axis, dtype, group, sink, window, rows, cols),
then head and tail verbatim, then the middle: verbatim when bits is 16, else a Quantized
body. The CRC-32 covers everything before it, so a flipped bit anywhere is a ValueError
rather than a wrong array; lengths, shapes and values are validated as well.
"""

from __future__ import annotations

import math
import struct
import zlib

import numpy as np

from kernels.mixed import ALL_BITS, LOSSLESS, Compressed, split_sizes
from kernels.pack import BITS, packed_size
from kernels.quant import Quantized, check_layout, check_quantized, param_shape

MAGIC = b"MKVQ"
VERSION = 1
_PREFIX = struct.Struct("<4sBB")
_QHEAD = struct.Struct("<BBBxIII")
_CHEAD = struct.Struct("<BBBxIIIII")
_CRC = struct.Struct("<I")
_KIND_Q, _KIND_C = 1, 2
_DTYPES = {1: np.dtype("<f2"), 2: np.dtype("<f4")}
_CODES = {np.dtype(np.float16): 1, np.dtype(np.float32): 2}


def _code(dtype: np.dtype) -> int:
    try:
        return _CODES[np.dtype(dtype)]
    except KeyError:
        raise ValueError(f"unsupported dtype {dtype}") from None


def _raw(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).tobytes()


def _pack(s: struct.Struct, *values: int) -> bytes:
    try:
        return s.pack(*values)
    except struct.error as exc:
        raise ValueError(f"a size does not fit the format: {exc}") from None


def _quantized_body(q: Quantized) -> list[bytes]:
    check_quantized(q)
    head = _pack(_QHEAD, q.bits, q.axis, _code(q.scale.dtype), q.group, *q.shape)
    return [head, _raw(q.packed), _raw(q.scale), _raw(q.zero)]


def _compressed_body(c: Compressed) -> list[bytes]:
    rows, cols = c.shape
    n_head, n_mid, n_tail = split_sizes(rows, c.sink, c.window)
    for name, arr, n in (("head", c.head, n_head), ("tail", c.tail, n_tail)):
        if arr.shape != (n, cols) or arr.dtype != c.dtype:
            raise ValueError(f"{name} does not match the shape, sink and window")
    parts = [
        _pack(_CHEAD, c.bits, c.axis, _code(c.dtype), c.group, c.sink, c.window, rows, cols),
        _raw(c.head),
        _raw(c.tail),
    ]
    if isinstance(c.middle, Quantized):
        if (c.middle.bits, c.middle.axis, c.middle.group) != (c.bits, c.axis, c.group):
            raise ValueError("middle does not match bits, axis and group")
        if c.middle.shape != (n_mid, cols):
            raise ValueError("middle does not match the shape, sink and window")
        return parts + _quantized_body(c.middle)
    if c.bits != LOSSLESS or c.middle.shape != (n_mid, cols) or c.middle.dtype != c.dtype:
        raise ValueError("a verbatim middle needs bits=16 and the original shape and dtype")
    return [*parts, _raw(c.middle)]


def to_bytes(obj: Quantized | Compressed) -> bytes:
    """Serialise a `Quantized` or `Compressed`; `from_bytes` reads it back exactly."""
    if isinstance(obj, Quantized):
        kind, body = _KIND_Q, _quantized_body(obj)
    elif isinstance(obj, Compressed):
        kind, body = _KIND_C, _compressed_body(obj)
    else:
        raise TypeError(f"cannot serialise {type(obj).__name__}")
    data = b"".join([_PREFIX.pack(MAGIC, VERSION, kind), *body])
    return data + _CRC.pack(zlib.crc32(data))


class _Reader:
    """Sequential reads from a buffer; running short is a ValueError, never a crash."""

    def __init__(self, data: memoryview) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise ValueError("truncated data")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, s: struct.Struct) -> tuple[int, ...]:
        return s.unpack(self.take(s.size))

    def array(self, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        count = math.prod(shape)
        raw = self.take(count * dtype.itemsize)
        arr = np.frombuffer(raw, dtype=dtype, count=count).reshape(shape)
        return arr.astype(dtype.newbyteorder("="), copy=False)


def _dtype(code: int) -> np.dtype:
    if code not in _DTYPES:
        raise ValueError(f"unknown dtype code {code}")
    return _DTYPES[code]


def _read_quantized(r: _Reader) -> Quantized:
    bits, axis, dcode, group, rows, cols = r.unpack(_QHEAD)
    dtype = _dtype(dcode)
    if bits not in BITS:
        raise ValueError(f"bad bit width {bits}")
    check_layout(group, axis)
    count = rows * cols
    packed = r.array(np.dtype(np.uint8), (packed_size(count, bits),))
    used = count * bits % 8
    if used and int(packed[-1]) >> used:
        raise ValueError("non-zero padding bits after the last code")
    pshape = param_shape((rows, cols), group, axis)
    scale, zero = r.array(dtype, pshape), r.array(dtype, pshape)
    q = Quantized(bits, group, axis, (rows, cols), packed, scale, zero)
    check_quantized(q)
    return q


def _read_verbatim(r: _Reader, dtype: np.dtype, shape: tuple[int, int]) -> np.ndarray:
    arr = r.array(dtype, shape)
    if not np.isfinite(arr).all():
        raise ValueError("a verbatim token holds a non-finite value")
    return arr


def _read_compressed(r: _Reader) -> Compressed:
    bits, axis, dcode, group, sink, window, rows, cols = r.unpack(_CHEAD)
    dtype = _dtype(dcode)
    if bits not in ALL_BITS:
        raise ValueError(f"bad bit width {bits}")
    check_layout(group, axis)
    n_head, n_mid, n_tail = split_sizes(rows, sink, window)
    head = _read_verbatim(r, dtype, (n_head, cols))
    tail = _read_verbatim(r, dtype, (n_tail, cols))
    if bits == LOSSLESS:
        middle: Quantized | np.ndarray = _read_verbatim(r, dtype, (n_mid, cols))
    else:
        middle = _read_quantized(r)
        if (middle.bits, middle.axis, middle.group, middle.shape) != (
            bits,
            axis,
            group,
            (n_mid, cols),
        ):
            raise ValueError("the quantised middle does not match its container")
    native = dtype.newbyteorder("=")
    return Compressed(bits, axis, group, sink, window, (rows, cols), native, head, middle, tail)


def from_bytes(data: bytes) -> Quantized | Compressed:
    """Parse `to_bytes` output; any truncation, corruption or inconsistency is a ValueError.

    The arrays returned are read-only views of ``data``.
    """
    view = memoryview(data).cast("B")
    if len(view) < _PREFIX.size + _CRC.size:
        raise ValueError("truncated data")
    body, (crc,) = view[: -_CRC.size], _CRC.unpack(view[-_CRC.size :])
    magic, version, kind = _PREFIX.unpack(body[: _PREFIX.size])
    if magic != MAGIC:
        raise ValueError("not memctl KV data (bad magic)")
    if version != VERSION:
        raise ValueError(f"unsupported format version {version} (this build reads {VERSION})")
    if zlib.crc32(body) != crc:
        raise ValueError("checksum mismatch: the data is corrupt")
    r = _Reader(body)
    r.take(_PREFIX.size)
    if kind == _KIND_Q:
        obj: Quantized | Compressed = _read_quantized(r)
    elif kind == _KIND_C:
        obj = _read_compressed(r)
    else:
        raise ValueError(f"unknown object kind {kind}")
    if r.pos != len(body):
        raise ValueError("trailing bytes after the data")
    return obj


def _quantized_nbytes(q: Quantized) -> int:
    rows, cols = q.shape
    groups = math.prod(param_shape(q.shape, q.group, q.axis))
    return _QHEAD.size + packed_size(rows * cols, q.bits) + 2 * groups * q.scale.itemsize


def nbytes(obj: Quantized | Compressed) -> int:
    """Size of ``to_bytes(obj)``, computed without serialising (for bytes-per-token)."""
    frame = _PREFIX.size + _CRC.size
    if isinstance(obj, Quantized):
        return frame + _quantized_nbytes(obj)
    if not isinstance(obj, Compressed):
        raise TypeError(f"cannot size {type(obj).__name__}")
    dense = obj.head.nbytes + obj.tail.nbytes
    if isinstance(obj.middle, Quantized):
        return frame + _CHEAD.size + dense + _quantized_nbytes(obj.middle)
    return frame + _CHEAD.size + dense + obj.middle.nbytes
