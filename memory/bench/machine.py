"""What a benchmark ran on: the CPU, its cores and the embedder's weight format.

Two machines of the same kind can sit on different CPUs (AVX-512 with BF16 dot products on
one, AVX2 only on another), and the embedder's speed, hence batch ingest, nearly halves
between them. A number without its machine cannot be compared, so every timing report
(latency, locomo, startup, ann, kv) carries one.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

# The SIMD features that decide the embedder's kernels and weight format, in report order.
SIMD_FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16")


def parse_cpuinfo(text: str) -> dict[str, Any]:
    """The first processor's model name, family, model and SIMD flags from /proc/cpuinfo."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break  # one processor is enough: a VM's cores are alike
            continue
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    flags = set(fields.get("flags", "").split())
    out: dict[str, Any] = {"cpu": fields.get("model name") or platform.processor() or "unknown"}
    for key in ("cpu family", "model"):
        if fields.get(key, "").isdigit():
            out[key.replace("cpu ", "")] = int(fields[key])
    out["simd"] = [f for f in SIMD_FLAGS if f in flags]
    return out


def describe() -> dict[str, Any]:
    """The machine as the benchmarks report it (cheap: no model is loaded). Benchmarks call
    it before their work, so a bad `MEMCTL_EMBED_QTYPE` fails at once, not after the run."""
    import llama_cpp  # a dependency; default_qtype() imports it too

    from memory.llm.base import usable_cores
    from memory.llm.convert import default_qtype

    try:
        info = parse_cpuinfo(Path("/proc/cpuinfo").read_text(errors="replace"))
    except OSError:  # not Linux
        info = {"cpu": platform.processor() or platform.machine() or "unknown", "simd": []}
    return {**info, "cores": usable_cores(), "arch": platform.machine(),
            "python": platform.python_version(), "llama_cpp_python": str(llama_cpp.__version__),
            "embedder_weights": default_qtype()}


def summary(machine: dict[str, Any]) -> str:
    """One line for a report's footer."""
    simd = ", ".join(machine.get("simd") or []) or "no AVX"
    return (f"{machine['cpu']} ({machine['cores']} cores; {simd}); embedder weights "
            f"{machine['embedder_weights']}; llama-cpp-python {machine['llama_cpp_python']}")
