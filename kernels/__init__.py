"""KV-cache quantisation kernels (NumPy): bit packing, groupwise asymmetric quantisation,
mixed precision with verbatim sink/recent tokens, and a small checked binary format.

Typical use for one layer's cache, shaped [n_tokens, n_channels]::

    k_blob = to_bytes(compress(k, 4, axis=0))  # K: groups along tokens, per channel
    v_blob = to_bytes(compress(v, 4, axis=1))  # V: groups along channels, per token
    k = decompress(from_bytes(k_blob))
"""

from kernels.mixed import Compressed, compress, decompress
from kernels.quant import Quantized, dequantize, error_bound, quantize
from kernels.serial import from_bytes, nbytes, to_bytes

__all__ = [
    "Compressed",
    "Quantized",
    "compress",
    "decompress",
    "dequantize",
    "error_bound",
    "from_bytes",
    "nbytes",
    "quantize",
    "to_bytes",
]
