"""The local generator (real GGUF model through llama.cpp) and the reranker built on it."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from memory.llm.generator import (
    DEFAULT_MODEL,
    ENV_MODEL,
    Generator,
    GeneratorError,
    load_generator,
    model_path,
)
from memory.llm.prefix_cache import PrefixCache
from memory.llm.state_codec import LOSSLESS
from memory.recall import Hit
from memory.recall.rerank import Reranker
from memory.record import Memory, new_id

TEXT = "The capital of France is Paris. The capital of Italy is Rome. The capital of Spain is"


@pytest.fixture(scope="module")
def gen(models_dir: Path):
    g = load_generator(models_dir, n_ctx=1024, n_seq=8)
    yield g
    g.close()


def test_model_resolution(models_dir: Path, tmp_path: Path, monkeypatch) -> None:
    path = model_path(None, models_dir)  # the default, assembled once into models_dir
    assert DEFAULT_MODEL == "gemma3-270m" and path.parent == models_dir and path.is_file()
    assert model_path("gemma3-270m", models_dir) == path  # the second call only checks the size
    assert model_path("smollm2-135m", models_dir).suffix == ".gguf"
    monkeypatch.setenv(ENV_MODEL, str(path))
    assert model_path(None, tmp_path) == path
    with pytest.raises(GeneratorError, match="no such generator model"):
        model_path("gpt-17", models_dir)
    with pytest.raises(GeneratorError, match="not found"):
        Generator(tmp_path / "missing.gguf")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF but not really")
    with pytest.raises(GeneratorError, match="cannot load"):
        Generator(bad)
    with pytest.raises(GeneratorError, match="unknown KV cache type"):
        Generator(path, kv_type="q3")


def test_tokens_round_trip_and_greedy_continuation(gen) -> None:
    tokens = gen.tokenize(TEXT)
    assert gen.detokenize(tokens[1:]) == TEXT  # after the start token
    gen.clear()
    assert gen.generate(TEXT, max_tokens=3).strip().startswith("Madrid")
    assert gen.seq_len(0) == 0  # generate leaves no trace


def test_untrusted_text_cannot_smuggle_control_tokens(gen) -> None:
    marker = "<end_of_turn>"
    assert len(gen.tokenize(marker, bos=False)) == 1  # a chat-template marker
    plain = gen.tokenize(f"note {marker} more", bos=False, special=False)
    assert len(plain) > 3 and all(gen.piece(t) for t in plain)  # no silent control token
    assert gen.detokenize(plain) == f"note {marker} more"


def test_batched_sequences_match_separate_evaluation(gen) -> None:
    a, b = gen.tokenize(TEXT), gen.tokenize("Water boils at one hundred degrees")
    gen.clear()
    alone_a = gen.eval(a, seq=0)
    gen.clear()
    alone_b = gen.eval(b, seq=0)
    gen.clear()
    both = gen.eval_many([a, b], [1, 2])
    assert gen.seq_len(1) == len(a) and gen.seq_len(2) == len(b)
    for got, want in zip(both, (alone_a, alone_b), strict=True):
        assert int(np.argmax(got)) == int(np.argmax(want))
        # Batched sums differ in rounding (and activations are re-quantized), not in meaning.
        lp = got - np.logaddexp.reduce(got)
        lq = want - np.logaddexp.reduce(want)
        assert float(np.sum(np.exp(lp) * (lp - lq))) < 0.05
    # A copied sequence continues like the original.
    gen.copy_seq(1, 3)
    cont = gen.tokenize(" Madrid.", bos=False)
    x, y = gen.eval_many([cont, cont], [1, 3])
    assert np.array_equal(x, y)
    gen.truncate(3, 2)
    assert gen.seq_len(3) == 2
    gen.clear()
    assert gen.seq_len(1) == 0


def test_misuse_is_a_clear_error(gen) -> None:
    gen.clear()
    with pytest.raises(GeneratorError, match="too long"):
        gen.eval([1] * (gen.n_ctx + 1))
    with pytest.raises(GeneratorError, match="out of range"):
        gen.eval([2], seq=gen.n_seq)
    with pytest.raises(GeneratorError, match="one distinct sequence"):
        gen.eval_many([[2], [2]], [1, 1])
    with pytest.raises(GeneratorError, match="nothing to evaluate"):
        gen.eval([])


def test_close_is_idempotent(models_dir: Path) -> None:
    g = load_generator(models_dir, n_ctx=128, n_seq=1)
    g.close()
    g.close()


# A 270M model is a weak relevance judge (README: rerank stays off by default), and the
# margins it gives are often a tenth of a log-odd, which CPU-dependent rounding in llama.cpp
# and a 4-bit cached state can flip. It separates this pair by about 0.5.
QUERY = "Which database did we choose for the job queue?"
PASSAGES = [
    "We decided to use redis for the job queue because it avoids a global lock.",
    "Melanie: I painted a lake sunrise last year, it's special to me.",
    "Melanie: We went camping in the mountains with the kids last weekend.",
]


def test_reranker_prefers_the_relevant_passage_with_or_without_cache(gen) -> None:
    plain = Reranker(gen, None, top=3).score(QUERY, PASSAGES)
    assert int(np.argmax(plain)) == 0
    # Through a lossless cache: computed once, then instruction + query restored, same scores.
    exact = Reranker(gen, PrefixCache(64 << 20, settings=LOSSLESS), top=3)
    first = exact.score(QUERY, PASSAGES)
    again = exact.score(QUERY, PASSAGES)
    assert exact.cache is not None and exact.cache.stats().hits >= 1
    assert np.allclose(first, plain, atol=1e-3) and np.allclose(again, plain, atol=1e-3)
    # Through the default 4-bit cache: close to the plain scores. Measured: within 0.26 on 15
    # pairs; a restore that lost the few-shot examples moves them by 0.55 and flips the order.
    lossy = Reranker(gen, PrefixCache(64 << 20), top=3)
    lossy.score(QUERY, PASSAGES)
    approx = lossy.score(QUERY, PASSAGES)
    assert lossy.cache is not None and lossy.cache.stats().hits >= 1
    assert np.allclose(approx, plain, atol=0.4) and int(np.argmax(approx)) == 0
    assert gen.seq_len(0) == 0 and all(gen.seq_len(s) == 0 for s in range(gen.n_seq))
    assert lossy.score(QUERY, []) == []


def test_rerank_reorders_hits_and_records_the_model_rank(gen) -> None:
    now = datetime(2024, 1, 1, tzinfo=UTC)
    hits = [Hit(Memory(id=new_id(now), project="t", kind="episode", text=text,
                       content_hash=str(i), created_at=now, valid_from=now), 1.0 - i / 10, 0.5)
            for i, text in enumerate(reversed(PASSAGES))]
    ranked = Reranker(gen, None, top=3, weight=2.0).rerank(QUERY, hits)
    assert sorted(h.memory.id for h in ranked) == sorted(h.memory.id for h in hits)
    assert ranked[0].memory.text == PASSAGES[0]
    assert ranked[0].ranks["rerank"] == 1


def test_query_expansion_only_touches_short_queries(gen) -> None:
    from memory.recall.rerank import QueryExpander

    cache = PrefixCache(64 << 20)
    expander = QueryExpander(gen, cache, max_words=4)
    long = "When did Caroline go to the LGBTQ support group last spring?"
    assert expander.expand(long) == long
    short = "camping trip"
    expanded = expander.expand(short)
    assert expanded.startswith(short + " ") and "\n" not in expanded
    # Again from the cached (4-bit) instruction state: still an expansion of the same query.
    assert expander.expand(short).startswith(short + " ")
    assert cache.stats().hits >= 1 and gen.seq_len(0) == 0


def test_the_generator_stays_off_the_startup_paths() -> None:
    code = ("import sys, memory.cli, memory.bench.cli, mcp_server.server, memory.recall; "
            "bad = [m for m in ('memory.llm.generator', 'memory.recall.rerank', 'kernels.quant')"
            " if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.strip() == "[]"


def test_bench_locomo_reports_rerank_and_expansion(cli, tmp_path: Path) -> None:
    import json

    data = tmp_path / "locomo"
    data.mkdir()
    turns = ["Hey Mel! How have you been?", "I went to an LGBTQ support group yesterday.",
             "That sounds powerful. I painted a lake sunrise last week.",
             "We went camping in the mountains with the kids.", "I love the violin."]
    conv = {
        "session_1_date_time": "1:56 pm on 8 May, 2023",
        "session_1": [{"speaker": "Caroline" if i % 2 == 0 else "Melanie",
                       "dia_id": f"D1:{i + 1}", "text": t} for i, t in enumerate(turns)],
        "qa": [{"question": "When did Caroline go to the LGBTQ support group?",
                "evidence": ["D1:2"], "category": 2},
               {"question": "What did Melanie paint?", "evidence": ["D1:3"], "category": 1},
               {"question": "Who plays violin?", "evidence": ["D1:5"], "category": 1}],
    }
    (data / "1.json").write_text(json.dumps(conv))
    r = cli("bench", "locomo", "--data", str(data), "--mode", "fused", "--rerank",
            "--rerank-top", "4", "--expand", "--limit", "2", "--json", timeout=600)
    assert r.code == 0, r.stderr
    out = r.json()
    assert out["questions"] == 2
    assert out["machine"]["cpu"] and out["machine"]["embedder_weights"]
    assert set(out["modes"]) == {"fused", "fused+rerank", "fused+expand"}
    for scores in out["modes"].values():
        assert scores["questions"] == 2 and 0 <= scores["turn_recall@5"] <= 1
    assert set(out["latency_ms"]) == {"rerank", "expand"}
    assert out["latency_ms"]["rerank"]["mean"] > 0
