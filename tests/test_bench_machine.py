"""The machine line every timing benchmark report carries."""

from __future__ import annotations

import pytest

from memory.bench.machine import describe, parse_cpuinfo, summary
from memory.llm.base import EmbedderError

ZEN2 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 23
model\t\t: 49
model name\t: AMD EPYC
flags\t\t: fpu sse sse2 avx f16c fma avx2 bmi2

processor\t: 1
model name\t: something else
flags\t\t: avx512f avx512_bf16
"""


def test_cpuinfo_gives_the_first_processor_and_its_simd_flags() -> None:
    info = parse_cpuinfo(ZEN2)
    assert info == {"cpu": "AMD EPYC", "family": 23, "model": 49,
                    "simd": ["avx2", "fma", "f16c"]}


def test_cpuinfo_without_the_usual_fields_still_names_something() -> None:
    info = parse_cpuinfo("processor : 0\nflags : avx512f avx512_bf16 avx2\n")
    assert info["cpu"]
    assert info["simd"] == ["avx2", "avx512f", "avx512_bf16"]
    assert "family" not in info and "model" not in info


def test_describe_reports_this_machine_and_the_embedder_format(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEMCTL_EMBED_QTYPE", raising=False)
    m = describe()
    assert m["cores"] >= 1 and m["cpu"] and m["python"]
    # The format follows the CPU: BF16 only with AVX-512 BF16 dot products.
    assert m["embedder_weights"] == ("BF16" if "avx512_bf16" in m["simd"] else "Q8_0")
    monkeypatch.setenv("MEMCTL_EMBED_QTYPE", "F32")
    assert describe()["embedder_weights"] == "F32"
    line = summary(m)
    assert m["cpu"] in line and m["embedder_weights"] in line


def test_describe_refuses_an_unknown_weight_format(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMCTL_EMBED_QTYPE", "Q2_K")
    with pytest.raises(EmbedderError, match="unsupported qtype"):
        describe()


def test_the_ann_report_names_its_machine_in_json_and_in_the_table(cli) -> None:
    r = cli("bench", "ann", "--n", "500", "--json", timeout=300)
    assert r.code == 0, r.stderr
    report = r.json()
    assert [row["vectors"] for row in report["rows"]] == [500]
    here = describe()
    assert {k: report["machine"][k] for k in ("cpu", "cores", "simd")} == {
        k: here[k] for k in ("cpu", "cores", "simd")}
    table = cli("bench", "ann", "--n", "500", timeout=300)
    assert table.code == 0, table.stderr
    assert f"machine: {report['machine']['cpu']}" in table.stdout


def test_the_startup_report_names_its_machine(cli) -> None:
    r = cli("bench", "startup", "--json", timeout=300)
    assert r.code == 0, r.stderr
    report = r.json()
    assert report["initialize_s"] > 0 and report["machine"]["cores"] >= 1


def test_a_bad_weight_format_fails_the_bench_at_once_and_clearly(cli) -> None:
    r = cli("bench", "latency", "--n", "100000", env={"MEMCTL_EMBED_QTYPE": "Q2_K"},
            timeout=60)
    assert r.code != 0
    assert "unsupported qtype" in r.stderr and "Traceback" not in r.stderr
