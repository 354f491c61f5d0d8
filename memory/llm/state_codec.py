"""Compress llama.cpp's per-sequence state (`llama_state_seq_get_data`) and restore it.

The layout parsed here is the one written by the pinned llama.cpp (llama-cpp-python 0.3.36):

    u32 magic 0xaf143cd8, i32 seq_id
    then one block per KV cache (two for interleaved sliding-window models, base then SWA):
      u32 n_stream; per stream: u32 cell_count, and if it is not 0:
        per cell: i32 pos, u32 n_seq_id, [12-byte cell ext: M-RoPE/PLE models], i32 seq_id * n
        u32 v_trans, u32 n_layer
        per layer: i32 k_type, u64 k_row_size, k rows (cell_count * k_row_size bytes)
        per layer, v_trans == 0: i32 v_type, u64 v_row_size, v rows
                   v_trans == 1: i32 v_type, u32 v_elem_size, u32 n_embd_v, v columns
                                 (n_embd_v runs of cell_count elements: V transposed)

A state is split into its K/V data regions and everything else (the "skeleton", kept
verbatim). Float16/float32 regions are compressed with `kernels` (K per channel, V per
token); quantized cache types are kept as they are. Decoding writes the regions back into
the skeleton, so the result has exactly the original layout and size, and lossless settings
give back the original bytes. A state that does not parse as exactly this layout (another
llama.cpp version, a recurrent model, a corrupted buffer) is stored losslessly as is: the
codec never guesses. Blobs are self-describing; `decode` rejects a damaged blob with
`CodecError` instead of producing a wrong state.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

MAGIC = 0xAF143CD8
_RAW = b"MKV0"  # lossless passthrough: the llama.cpp state follows
_PACKED = b"MKV1"  # skeleton + compressed regions
_EXT_BYTES = 12  # llama_kv_cell_ext: i32 x, i32 y, i32 tok
_MAX_LAYERS = 4096
_MAX_STREAMS = 256
_MAX_SEQ_IDS = 256
# ggml type id -> (values per block, bytes per block) for the cache types llama.cpp allows.
GGML_TYPES = {0: (1, 4), 1: (1, 2), 30: (1, 2), 8: (32, 34), 2: (32, 18), 3: (32, 20),
              6: (32, 22), 7: (32, 24), 20: (32, 18)}
_FLOAT_DTYPES = {0: np.dtype("<f4"), 1: np.dtype("<f2")}


class CodecError(ValueError):
    """A blob that is not a valid encoded state."""


@dataclass(frozen=True)
class Region:
    """One layer's K or V data inside a state: `rows` cells x `cols` values of `ggml_type`,
    stored row by row, or column by column when `transposed` (llama.cpp's V without flash
    attention)."""

    kind: str  # "k" or "v"
    offset: int
    length: int
    ggml_type: int
    rows: int
    cols: int
    transposed: bool

    @property
    def compressible(self) -> bool:
        return self.ggml_type in _FLOAT_DTYPES and self.rows > 0 and self.cols > 0


@dataclass(frozen=True)
class Layout:
    regions: tuple[Region, ...]
    n_cells: tuple[int, ...]  # per cache block (1, or 2 for iSWA), summed over streams
    cell_ext: bool

    @property
    def n_tokens(self) -> int:
        """Tokens of the sequence: the largest cache block holds them all (an SWA cache
        keeps only its window)."""
        return max(self.n_cells, default=0)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, fmt: str) -> int:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise CodecError("truncated state")
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return value

    def skip(self, n: int) -> int:
        if n < 0 or self.pos + n > len(self.data):
            raise CodecError("truncated state")
        start = self.pos
        self.pos += n
        return start


def parse(state: bytes) -> Layout:
    """The layout of a llama.cpp sequence state, or `CodecError` if it is not one.

    Whether cells carry the 12-byte extension depends on the model, not on anything in the
    state, so both readings are tried; only one can consume the buffer exactly.
    """
    errors: list[str] = []
    for ext in (False, True):
        try:
            return _parse(state, ext)
        except CodecError as exc:
            errors.append(str(exc))
    raise CodecError(f"not a llama.cpp sequence state of the known layout ({errors[0]})")


def _parse(state: bytes, ext: bool) -> Layout:
    r = _Reader(state)
    if r.take("<I") != MAGIC:
        raise CodecError("bad magic")
    r.take("<i")  # the sequence id it was saved from; set_data ignores it
    regions: list[Region] = []
    cells: list[int] = []
    while r.pos < len(state):
        cells.append(_parse_cache(r, ext, regions))
    if not cells:
        raise CodecError("no KV cache in the state")
    return Layout(tuple(regions), tuple(cells), ext)


def _parse_cache(r: _Reader, ext: bool, regions: list[Region]) -> int:
    n_stream = r.take("<I")
    if not 1 <= n_stream <= _MAX_STREAMS:
        raise CodecError(f"implausible stream count {n_stream}")
    total = 0
    for _ in range(n_stream):
        n_cells = r.take("<I")
        if n_cells == 0:
            continue
        for _cell in range(n_cells):
            if r.take("<i") < 0:
                raise CodecError("negative cell position")
            n_seq = r.take("<I")
            if n_seq > _MAX_SEQ_IDS:
                raise CodecError(f"implausible seq id count {n_seq}")
            r.skip((_EXT_BYTES if ext else 0) + 4 * n_seq)
        v_trans = r.take("<I")
        n_layer = r.take("<I")
        if v_trans not in (0, 1) or not 1 <= n_layer <= _MAX_LAYERS:
            raise CodecError("implausible layer header")
        for _layer in range(n_layer):
            regions.append(_rows_region(r, "k", n_cells))
        for _layer in range(n_layer):
            regions.append(_columns_region(r, n_cells) if v_trans
                           else _rows_region(r, "v", n_cells))
        total += n_cells
    return total


def _values(ggml_type: int, nbytes: int) -> int:
    """Values in `nbytes` of `ggml_type`, or `CodecError` if that is not a whole number."""
    if ggml_type not in GGML_TYPES:
        raise CodecError(f"unknown cache type {ggml_type}")
    per_block, block_bytes = GGML_TYPES[ggml_type]
    if nbytes <= 0 or nbytes % block_bytes:
        raise CodecError(f"row of {nbytes} bytes does not fit type {ggml_type}")
    return nbytes // block_bytes * per_block


def _rows_region(r: _Reader, kind: str, n_cells: int) -> Region:
    ggml_type = r.take("<i")
    row_size = r.take("<Q")
    cols = _values(ggml_type, row_size)
    length = n_cells * row_size
    return Region(kind, r.skip(length), length, ggml_type, n_cells, cols, False)


def _columns_region(r: _Reader, n_cells: int) -> Region:
    ggml_type = r.take("<i")
    elem = r.take("<I")
    n_embd = r.take("<I")
    if ggml_type not in GGML_TYPES or GGML_TYPES[ggml_type] != (1, elem) or n_embd == 0:
        raise CodecError("implausible transposed V header")
    length = n_cells * n_embd * elem
    return Region("v", r.skip(length), length, ggml_type, n_cells, n_embd, True)


# -- encoding ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """How to compress: bits for K and V (2, 4, 8; 16 = lossless); `mixed` keeps the first
    `sink` and last `window` tokens of each layer verbatim (`kernels.mixed`)."""

    k_bits: int = 4
    v_bits: int = 4
    mixed: bool = True
    group: int = 32
    sink: int = 4
    window: int = 32

    def __post_init__(self) -> None:
        if self.k_bits not in (2, 4, 8, 16) or self.v_bits not in (2, 4, 8, 16):
            raise ValueError("codec bits must be 2, 4, 8 or 16")
        if self.group < 1 or self.sink < 0 or self.window < 0:
            raise ValueError("codec group must be positive, sink and window not negative")

    @property
    def lossless(self) -> bool:
        return self.k_bits == 16 and self.v_bits == 16


LOSSLESS = Settings(16, 16, False)


def encode(state: bytes, settings: Settings = LOSSLESS) -> bytes:
    """A compact blob for `state`; unparseable states are kept verbatim."""
    if settings.lossless:
        return _RAW + state
    try:
        layout = parse(state)
    except CodecError:
        return _RAW + state
    return _encode(state, layout, settings)


_ENTRY = struct.Struct("<QBIIQ")  # offset in the state, flags, rows, cols, payload bytes
_HEAD = struct.Struct("<QQI")  # state bytes, skeleton bytes, entries
_TRANSPOSED, _F16 = 1, 2


def _encode(state: bytes, layout: Layout, settings: Settings) -> bytes:
    from kernels import serial

    skeleton = bytearray()
    payloads: list[bytes] = []
    entries: list[bytes] = []
    cursor = 0
    for region in layout.regions:
        bits = settings.k_bits if region.kind == "k" else settings.v_bits
        if bits == 16 or not region.compressible:
            continue
        try:
            compressed = _compress(_array(state, region), region, bits, settings)
        except ValueError:
            continue  # NaN or infinite values: this region stays verbatim
        payload = serial.to_bytes(compressed)
        skeleton += state[cursor:region.offset]
        cursor = region.offset + region.length
        payloads.append(payload)
        flags = (_TRANSPOSED if region.transposed else 0) | (_F16 if region.ggml_type == 1 else 0)
        entries.append(_ENTRY.pack(region.offset, flags, region.rows, region.cols, len(payload)))
    skeleton += state[cursor:]
    body = b"".join([_HEAD.pack(len(state), len(skeleton), len(entries)), *entries,
                     bytes(skeleton), *payloads])
    return _PACKED + struct.pack("<I", zlib.crc32(body)) + body


def _array(state: bytes, region: Region) -> np.ndarray:
    """The region as a [tokens, channels] array (a view when not transposed)."""
    dtype = _FLOAT_DTYPES[region.ggml_type]
    shape = (region.cols, region.rows) if region.transposed else (region.rows, region.cols)
    a = np.frombuffer(state, dtype, region.rows * region.cols, region.offset).reshape(shape)
    return a.T if region.transposed else a


def _compress(x: np.ndarray, region: Region, bits: int, settings: Settings) -> object:
    from kernels import mixed, quant

    axis = 0 if region.kind == "k" else 1
    x = np.ascontiguousarray(x, dtype=x.dtype.newbyteorder("="))
    if settings.mixed:
        return mixed.compress(x, bits, axis=axis, group=settings.group, sink=settings.sink,
                              window=settings.window)
    return quant.quantize(x, bits, settings.group, axis)


def decode(blob: bytes) -> bytes:
    """The llama.cpp state that `blob` encodes (lossy settings give approximate values in
    the exact original layout)."""
    if blob[:4] == _RAW:
        return bytes(blob[4:])
    if blob[:4] != _PACKED or len(blob) < 8:
        raise CodecError("not an encoded KV state")
    view = memoryview(blob)[8:]
    if zlib.crc32(view) != struct.unpack_from("<I", blob, 4)[0]:
        raise CodecError("damaged KV state blob (checksum)")
    try:
        return _decode(view)
    except CodecError:
        raise
    except (ValueError, struct.error, IndexError, TypeError) as exc:
        raise CodecError(f"damaged KV state blob: {exc}") from exc


def _decode(view: memoryview) -> bytes:
    from kernels import mixed, quant, serial

    state_len, skel_len, n = _HEAD.unpack_from(view, 0)
    at = _HEAD.size + n * _ENTRY.size
    skeleton = view[at:at + skel_len]
    at += skel_len
    out = bytearray(state_len)
    src = dst = 0
    for i in range(n):
        offset, flags, rows, cols, size = _ENTRY.unpack_from(view, _HEAD.size + i * _ENTRY.size)
        obj = serial.from_bytes(bytes(view[at:at + size]))
        at += size
        x = mixed.decompress(obj) if isinstance(obj, mixed.Compressed) else quant.dequantize(obj)
        dtype = _FLOAT_DTYPES[1] if flags & _F16 else _FLOAT_DTYPES[0]
        if x.shape != (rows, cols):
            raise CodecError("damaged KV state blob (shapes)")
        data = np.ascontiguousarray(x.T if flags & _TRANSPOSED else x, dtype=dtype).tobytes()
        gap = offset - dst
        if gap < 0 or src + gap > len(skeleton) or offset + len(data) > state_len:
            raise CodecError("damaged KV state blob (regions)")
        out[dst:offset] = skeleton[src:src + gap]
        src += gap
        out[offset:offset + len(data)] = data
        dst = offset + len(data)
    if at != len(view) or len(skeleton) - src != state_len - dst:
        raise CodecError("damaged KV state blob (sizes)")
    out[dst:] = skeleton[src:]
    return bytes(out)
