"""Bit packing of small unsigned codes (2, 4 or 8 bits wide) into a flat byte array.

Layout: codes are taken in the input's row-major order; byte ``k`` holds codes
``k * per .. k * per + per - 1`` (``per = 8 // bits``), the first code in the lowest bits.
Unused bits of the last byte are zero, and `unpack_bits` insists on it, so a corrupted
buffer is caught rather than silently decoded.
"""

from __future__ import annotations

import numpy as np

BITS = (2, 4, 8)


def check_bits(bits: int) -> None:
    if bits not in BITS:
        raise ValueError(f"bits must be one of {BITS}, got {bits!r}")


def packed_size(count: int, bits: int) -> int:
    """Bytes that `pack_bits` produces for ``count`` codes of ``bits`` bits."""
    check_bits(bits)
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    return (count * bits + 7) // 8


def pack_bits(codes: np.ndarray, bits: int) -> np.ndarray:
    """Pack uint8 codes (each < 2**bits) into a 1-D uint8 array of ``packed_size`` bytes."""
    check_bits(bits)
    codes = np.asarray(codes)
    if codes.dtype != np.uint8:
        raise ValueError(f"codes must be uint8, got {codes.dtype}")
    flat = codes.reshape(-1)
    if bits == 8:
        return flat.copy()
    if flat.size and int(flat.max()) >> bits:
        raise ValueError(f"a code does not fit in {bits} bits")
    per = 8 // bits
    pad = (-flat.size) % per
    if pad:
        flat = np.concatenate([flat, np.zeros(pad, np.uint8)])
    lanes = flat.reshape(-1, per)
    out = lanes[:, 0].copy()
    # One vectorised pass per lane (at most 3), not per element.
    for lane in range(1, per):
        out |= lanes[:, lane] << (bits * lane)
    return out


def unpack_bits(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    """Inverse of `pack_bits`: the first ``count`` codes as a 1-D uint8 array.

    ``packed`` must be exactly ``packed_size(count, bits)`` bytes with zero padding bits.
    """
    need = packed_size(count, bits)
    packed = np.asarray(packed)
    if packed.dtype != np.uint8 or packed.ndim != 1:
        raise ValueError("packed must be a 1-D uint8 array")
    if packed.size != need:
        raise ValueError(f"{count} codes of {bits} bits need {need} bytes, got {packed.size}")
    if bits == 8:
        return packed.copy()
    # One table lookup per byte yields all of its codes at once, as one wider integer.
    codes = np.take(_UNPACK[bits], packed).view(np.uint8)
    if codes[count:].any():
        raise ValueError("non-zero padding bits after the last code")
    return codes[:count]


def _unpack_table(bits: int) -> np.ndarray:
    """For each byte value, its ``8 // bits`` codes, viewed as one uint16/uint32 entry."""
    per = 8 // bits
    byte = np.arange(256, dtype=np.uint8)[:, None]
    codes = (byte >> (bits * np.arange(per, dtype=np.uint8))) & np.uint8((1 << bits) - 1)
    # Viewing the uint8 rows (not building integers) keeps the byte order right anywhere.
    return np.ascontiguousarray(codes).view(np.uint16 if per == 2 else np.uint32).reshape(256)


_UNPACK = {bits: _unpack_table(bits) for bits in (2, 4)}
