"""Time the kernels on a whole synthetic KV cache: ``python -m kernels.bench --help``.

Reports, per step, the best of ``--repeat`` runs in CPU time of this process (steadier than
wall time on a shared machine), plus the compressed size and the mean and max error.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from kernels.mixed import compress, decompress
from kernels.serial import from_bytes, to_bytes


def _best(step: Callable[[], object], repeat: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.process_time()
        result = step()
        best = min(best, time.process_time() - start)
    return best, result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Time compress/serialise/decompress of a synthetic float16 KV cache."
    )
    parser.add_argument("--layers", type=int, default=30)
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--channels", type=int, default=192, help="n_kv_heads * head_dim")
    parser.add_argument("--bits", type=int, default=4, choices=(2, 4, 8, 16))
    parser.add_argument("--group", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    shape = (args.tokens, args.channels)
    # K for every layer, then V; K is compressed per channel (axis 0), V per token (axis 1).
    cache = [rng.standard_normal(shape).astype(np.float16) for _ in range(2 * args.layers)]
    axes = [0] * args.layers + [1] * args.layers

    def run_compress() -> list:
        return [
            compress(x, args.bits, axis=a, group=args.group)
            for x, a in zip(cache, axes, strict=True)
        ]

    t_comp, packed = _best(run_compress, args.repeat)
    t_ser, blobs = _best(lambda: [to_bytes(c) for c in packed], args.repeat)
    t_de, parsed = _best(lambda: [from_bytes(b) for b in blobs], args.repeat)
    t_decomp, restored = _best(lambda: [decompress(c) for c in parsed], args.repeat)

    raw = sum(x.nbytes for x in cache)
    size = sum(len(b) for b in blobs)
    err = [np.abs(x.astype(np.float64) - y) for x, y in zip(cache, restored, strict=True)]
    print(
        f"{args.layers} layers x K,V x [{args.tokens}, {args.channels}] float16, "
        f"{args.bits}-bit, group {args.group}:\n"
        f"  compress {t_comp * 1e3:.0f} ms, to_bytes {t_ser * 1e3:.0f} ms, "
        f"from_bytes {t_de * 1e3:.0f} ms, decompress {t_decomp * 1e3:.0f} ms "
        f"(total {(t_comp + t_ser + t_de + t_decomp) * 1e3:.0f} ms CPU)\n"
        f"  {raw / 2**20:.2f} MiB -> {size / 2**20:.2f} MiB ({raw / size:.2f}x), "
        f"{size / args.tokens / 1024:.1f} KiB per token; "
        f"error mean {np.mean([e.mean() for e in err]):.4f}, max {max(e.max() for e in err):.4f}"
    )


if __name__ == "__main__":
    main()
