"""`memctl bench kv`: what a cached prompt prefix costs in bytes, fidelity and time.

Over a fixed set of prompts (Python's own reference documentation and synthetic project
notes, 256 to 2,048 tokens of the generator's tokenizer), side by side in one run:

- bytes per token of the cached state: llama.cpp's state with an f16, q8_0 and q4_0 KV cache
  (the quantized ones with flash attention, which they need), and memctl's codec applied to
  the f16 state at 8, 4 and 2 bits, uniform ("memctl-4bit") or mixed precision
  ("memctl-4bit-mixed": the first 4 and last 32 tokens of every layer kept verbatim), with
  scale/offset groups of 32 values ("-g128": of 128, smaller but coarser);
- fidelity against the f16 cache recomputed from scratch: after the prefix, a 16-token
  suffix and the f16 model's 32 greedy tokens are evaluated in one pass; mean KL divergence
  of the next-token distributions over those 48 positions, and greedy agreement, the share of
  the 32 greedy steps whose top token is still the f16 model's (teacher-forced, so one early
  near-tie does not decide the rest). `kl_floor` is the KL after nudging every cached f16
  value by one unit in the last place: llama.cpp quantizes activations for quantized
  weights, so no perturbation at all of the cache scores below it;
- restore: decompressing a cached 1,024-token prefix (the prefix cache's 4-bit mixed
  settings), loading it and evaluating a 16-token suffix, against prefilling all of it;
- rerank of 20 candidates: every candidate prompt evaluated on its own, against the
  reranker with a warm prefix cache (the instruction's state cached by an earlier query);
- session summaries (`memory.llm.summarise`) of 5 fixed sessions (`memory.bench.sessions`),
  each timed once without a cache and once with the instruction's state restored from a
  warm prefix cache (cached by a first summary, timed on its own as `summary_cold_ms`), and
  the share of summaries that come out the same both ways (a summary that differs may also
  differ in length, and so in decoding time).

Timings take the fastest of a few repeats: the machine is shared, and the minimum is the
least disturbed estimate of the same work.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    import numpy as np

    from memory.llm.generator import Generator

SUFFIX_TOKENS = 16
GREEDY_TOKENS = 32
RESTORE_PREFIX = 1024
RERANK_CANDIDATES = 20
REPEATS = 3
# (source, prefix tokens): pydoc topics ship with every CPython, so the prompts are fixed.
PROMPTS = (("exceptions", 256), ("assignment", 512), ("compound", 1024),
           ("specialnames", 2048), ("notes", 1024))
QUICK_PROMPTS = (("exceptions", 96),)
QUICK_SESSIONS = 2
# name -> (k bits, v bits, mixed, group); 16 bits would be lossless. Groups of 32 values
# (4 bytes of float16 scale and offset each) cost 1 bit per value; groups of 128, 0.25.
CODEC_ROWS = {
    "memctl-8bit": (8, 8, False, 32), "memctl-8bit-mixed": (8, 8, True, 32),
    "memctl-4bit": (4, 4, False, 32), "memctl-4bit-mixed": (4, 4, True, 32),
    "memctl-4bit-g128": (4, 4, False, 128), "memctl-4bit-g128-mixed": (4, 4, True, 128),
    "memctl-2bit": (2, 2, False, 32), "memctl-2bit-mixed": (2, 2, True, 32),
}
Progress = Callable[[str], None]


@dataclass
class Prompt:
    name: str
    prefix: list[int]
    tail: list[int]  # suffix + the f16 model's greedy tokens but the last
    greedy: list[int]


def prompt_text(source: str) -> str:
    from pydoc_data.topics import topics

    if source == "notes":
        from memory.bench.synthetic import generate

        return "Project memory notes:\n" + "\n".join(f"- {t}" for _, t, _ in generate(400))
    return topics[source]


def kl_divergence(p_logits: np.ndarray, q_logits: np.ndarray) -> float:
    """Mean KL(P || Q) over rows of logits."""
    import numpy as np

    lp = p_logits - np.logaddexp.reduce(p_logits, axis=-1, keepdims=True)
    lq = q_logits - np.logaddexp.reduce(q_logits, axis=-1, keepdims=True)
    return float(np.mean(np.sum(np.exp(lp) * (lp - lq), axis=-1)))


def agreement(ref_logits: np.ndarray, logits: np.ndarray, n: int) -> float:
    """Share of the last `n` positions whose top token matches the reference's."""
    import numpy as np

    return float(np.mean(ref_logits[-n:].argmax(-1) == logits[-n:].argmax(-1)))


def _fastest(fn: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def _ulp_nudged(state: bytes) -> bytes:
    """`state` with the lowest mantissa bit of every cached f16 value flipped."""
    import numpy as np

    from memory.llm.state_codec import parse

    out = bytearray(state)
    for r in parse(state).regions:
        if r.ggml_type == 1:
            a = np.frombuffer(state, np.uint16, r.rows * r.cols, r.offset) ^ np.uint16(1)
            out[r.offset:r.offset + r.length] = a.tobytes()
    return bytes(out)


def run(models_dir: Any, model: str | None, quick: bool, threads: int | None,
        progress: Progress) -> dict[str, Any]:
    from memory.llm.generator import Generator, model_path

    path = model_path(model, models_dir)
    specs = QUICK_PROMPTS if quick else PROMPTS
    suffix_n, greedy_n = (8, 8) if quick else (SUFFIX_TOKENS, GREEDY_TOKENS)
    n_ctx = max(n for _, n in specs) + suffix_n + greedy_n + 64
    progress("loading the model")
    f16 = Generator(path, n_ctx=max(n_ctx, 4096), n_seq=RERANK_CANDIDATES + 2, n_threads=threads)
    try:
        prompts = [_prompt(f16, name, n, suffix_n, greedy_n) for name, n in specs]
        rows, floor, states = _fidelity(f16, path, prompts, n_ctx, threads, greedy_n, progress)
        progress("restore vs prefill")
        restore = _restore(f16, prompts, states, quick)
        progress("rerank")
        rerank = _rerank(f16, 4 if quick else RERANK_CANDIDATES, 1 if quick else REPEATS)
        progress("session summaries")
        summary = _summary(f16, QUICK_SESSIONS if quick else None)
    finally:
        f16.close()
    return {"model": path.name, "prompts": [{"name": p.name, "tokens": len(p.prefix)}
                                           for p in prompts],
            "rows": rows, "kl_floor": floor, **restore, **rerank, **summary}


def _prompt(gen: Generator, source: str, n: int, suffix_n: int, greedy_n: int) -> Prompt:
    tokens = gen.tokenize(prompt_text(source))
    if len(tokens) < n + suffix_n:
        raise RuntimeError(f"prompt source {source!r} has only {len(tokens)} tokens")
    prefix, suffix = tokens[:n], tokens[n:n + suffix_n]
    gen.clear()
    gen.eval(prefix)
    greedy = gen.greedy(gen.eval(suffix), greedy_n)
    greedy += [greedy[-1]] * (greedy_n - len(greedy))  # an early end token: pad, still scored
    gen.clear()
    return Prompt(f"{source}-{n}", prefix, suffix + greedy[:-1], greedy)


def _tail_logits(gen: Generator, p: Prompt, state: bytes | None = None) -> np.ndarray:
    """Logits over the suffix and greedy positions, after prefilling or restoring."""
    gen.clear()
    if state is None:
        gen.eval(p.prefix)
    else:
        gen.set_state(state, 0)
    out = gen.eval(p.tail, all_logits=True)
    gen.clear()
    return out


def _fidelity(f16: Generator, path: Any, prompts: Sequence[Prompt], n_ctx: int,
              threads: int | None, greedy_n: int, progress: Progress
              ) -> tuple[list[dict[str, Any]], float, list[bytes]]:
    from memory.llm.generator import Generator
    from memory.llm.state_codec import Settings, decode, encode

    tokens = sum(len(p.prefix) for p in prompts)
    refs, states = [], []
    for p in prompts:
        progress(f"f16 reference: {p.name}")
        f16.clear()
        f16.eval(p.prefix)
        states.append(f16.get_state(0))
        refs.append(_tail_logits(f16, p))

    def row(name: str, sizes: list[int], logits: list[np.ndarray]) -> dict[str, Any]:
        kls = [kl_divergence(r, lg) for r, lg in zip(refs, logits, strict=True)]
        agree = [agreement(r, lg, greedy_n) for r, lg in zip(refs, logits, strict=True)]
        return {"name": name, "bytes_per_token": round(sum(sizes) / tokens, 1),
                "mean_kl": round(sum(kls) / len(kls), 6),
                "greedy_agreement": round(sum(agree) / len(agree), 4)}

    rows = [row("f16", [len(s) for s in states],
                [_tail_logits(f16, p, s) for p, s in zip(prompts, states, strict=True)])]
    for kv_type in ("q8_0", "q4_0"):
        progress(f"llama.cpp {kv_type} cache")
        with Generator(path, n_ctx=n_ctx, n_seq=1, n_threads=threads, kv_type=kv_type) as g:
            sizes, logits = [], []
            for p in prompts:
                g.clear()
                g.eval(p.prefix)
                sizes.append(len(g.get_state(0)))
                logits.append(_tail_logits(g, p))
        rows.append(row(kv_type, sizes, logits))
    for name, (k_bits, v_bits, mixed, group) in CODEC_ROWS.items():
        progress(f"codec: {name}")
        blobs = [encode(s, Settings(k_bits, v_bits, mixed, group)) for s in states]
        rows.append(row(name, [len(b) for b in blobs],
                        [_tail_logits(f16, p, decode(b))
                         for p, b in zip(prompts, blobs, strict=True)]))
    floor = [kl_divergence(r, _tail_logits(f16, p, _ulp_nudged(s)))
             for p, s, r in zip(prompts, states, refs, strict=True)]
    return rows, round(sum(floor) / len(floor), 6), states


def _restore(gen: Generator, prompts: Sequence[Prompt], states: Sequence[bytes], quick: bool
             ) -> dict[str, Any]:
    from memory.llm.prefix_cache import DEFAULT_SETTINGS
    from memory.llm.state_codec import decode, encode

    # The prompt closest to 1,024 tokens.
    i = min(range(len(prompts)), key=lambda j: abs(len(prompts[j].prefix) - RESTORE_PREFIX))
    p, blob = prompts[i], encode(states[i], DEFAULT_SETTINGS)
    suffix = p.tail[:SUFFIX_TOKENS]
    repeats = 1 if quick else REPEATS

    def full() -> None:
        gen.clear()
        gen.eval(p.prefix + suffix)

    def restored() -> None:
        gen.clear()
        gen.set_state(decode(blob), 0)
        gen.eval(suffix)

    t_full, t_restore = _fastest(full, repeats), _fastest(restored, repeats)
    gen.clear()
    return {"restore_prefix_tokens": len(p.prefix), "prefill_ms": round(t_full * 1000, 1),
            "restore_ms": round(t_restore * 1000, 1),
            "restore_speedup": round(t_full / t_restore, 2)}


def _rerank(gen: Generator, n: int, repeats: int) -> dict[str, Any]:
    import numpy as np

    from memory.bench.synthetic import generate, queries
    from memory.llm.prefix_cache import PrefixCache
    from memory.recall.rerank import Reranker

    passages = [t for _, t, _ in generate(n, seed=3)]
    query, warmup = queries(2, seed=5)
    reranker = Reranker(gen, PrefixCache(256 << 20))
    yes, no = reranker.answer_ids

    def naive() -> list[float]:
        prefix, _ = reranker.prefix_tokens(query)
        out = []
        for text in passages:
            gen.clear()
            lg = gen.eval(prefix + reranker.passage_tokens(text))
            out.append(float(lg[yes] - lg[no]))
        gen.clear()
        return out

    reranker.score(warmup, passages[:1])  # caches the instruction's state

    def cached() -> list[float]:
        reranker.cache.discard(reranker.prefix_tokens(query)[0])  # keep the query new
        return reranker.score(query, passages)

    t_naive, t_cached = _fastest(naive, repeats), _fastest(cached, repeats)
    a, b = np.asarray(naive()), np.asarray(cached())
    top = min(5, n)
    overlap = len(set(np.argsort(-a)[:top]) & set(np.argsort(-b)[:top])) / top
    return {"rerank_candidates": n, "rerank_naive_ms": round(t_naive * 1000, 1),
            "rerank_cached_ms": round(t_cached * 1000, 1),
            "rerank_speedup": round(t_naive / t_cached, 2), "rerank_top5_overlap": overlap}


def _summary(gen: Generator, limit: int | None) -> dict[str, Any]:
    from memory.bench.sessions import SESSIONS
    from memory.llm.prefix_cache import PrefixCache
    from memory.llm.summarise import Summariser

    texts = SESSIONS[:limit] if limit else SESSIONS
    cached, naive = Summariser(gen, PrefixCache(64 << 20)), Summariser(gen)

    def timed(s: Summariser, text: str) -> tuple[float, str | None]:
        started = time.perf_counter()
        out = s.summarise(text)
        return time.perf_counter() - started, out

    t_cold, _ = timed(cached, texts[-1])  # evaluates the instruction and caches its state
    t_cached, t_naive, same = [], [], 0
    for text in texts:  # alternated, so that a busy spell on the machine hits both
        tn, a = timed(naive, text)
        tc, b = timed(cached, text)
        t_naive.append(tn)
        t_cached.append(tc)
        same += a == b
    mean_cached, mean_naive = sum(t_cached) / len(texts), sum(t_naive) / len(texts)
    return {"summary_sessions": len(texts), "summary_ms": round(mean_cached * 1000, 1),
            "summary_naive_ms": round(mean_naive * 1000, 1),
            "summary_cold_ms": round(t_cold * 1000, 1),
            "summary_speedup": round(mean_naive / mean_cached, 2),
            "summary_same": round(same / len(texts), 2),
            "summary_prefix_tokens": len(cached.prefix_tokens())}


def kv(
    quick: Annotated[bool, typer.Option("--quick", help="One short prompt, 4 rerank "
                     "candidates and 2 session summaries: checks the machinery in about a "
                     "minute, measures nothing.")] = False,
    model: Annotated[str | None, typer.Option("--model", help="gemma3-270m, smollm2-135m or "
                     "a GGUF path (default: $MEMCTL_GENERATOR, else gemma3-270m).")] = None,
    threads: Annotated[int | None, typer.Option("--threads", min=1, help="llama.cpp "
                       "threads (default: $MEMCTL_GENERATOR_THREADS, else 1).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """KV-cache state: bytes per token of llama.cpp's f16/q8_0/q4_0 caches and of memctl's
    codec (8/4/2 bits, uniform or mixed precision), their KL divergence and greedy agreement
    against the f16 cache, restore + suffix vs full prefill, and rerank and session summaries
    with/without the prefix cache."""
    from rich.console import Console

    from memory.bench.machine import describe
    from memory.config import paths

    machine = describe()
    err = Console(stderr=True)
    with err.status("kv bench") as status:
        result = run(paths().models, model, quick, threads,
                     lambda msg: status.update(f"kv bench: {msg}"))
    result["machine"] = machine
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    _table(result)


def _table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    from memory.bench.machine import summary

    out = Console()
    prompts = ", ".join(str(p["tokens"]) for p in result["prompts"])
    table = Table(title=f"KV state of {result['model']} (prompts of {prompts} tokens)")
    for col in ("cache", "bytes/token", "vs f16", "mean KL", "greedy agreement"):
        table.add_column(col, justify="left" if col == "cache" else "right")
    f16 = result["rows"][0]["bytes_per_token"]
    for r in result["rows"]:
        table.add_row(r["name"], f"{r['bytes_per_token']:,.0f}",
                      f"{f16 / r['bytes_per_token']:.2f}x", f"{r['mean_kl']:.4f}",
                      f"{r['greedy_agreement']:.3f}")
    out.print(table)
    out.print(f"KL floor (every f16 value nudged by one ulp): {result['kl_floor']:.4f}")
    out.print(f"restore {result['restore_prefix_tokens']}-token prefix + 16-token suffix: "
              f"{result['restore_ms']} ms vs full prefill {result['prefill_ms']} ms "
              f"({result['restore_speedup']}x)")
    out.print(f"rerank {result['rerank_candidates']} candidates: "
              f"{result['rerank_cached_ms']} ms with the prefix cache vs "
              f"{result['rerank_naive_ms']} ms without ({result['rerank_speedup']}x; "
              f"top-5 overlap {result['rerank_top5_overlap']:.2f})")
    out.print(f"session summary ({result['summary_sessions']} sessions, "
              f"{result['summary_prefix_tokens']}-token instruction cached): "
              f"{result['summary_ms']} ms with the prefix cache vs {result['summary_naive_ms']} "
              f"ms without ({result['summary_speedup']}x; first, caching it: "
              f"{result['summary_cold_ms']} ms; same summary both ways: "
              f"{result['summary_same']:.0%})")
    out.print(f"[dim]machine: {summary(result['machine'])}[/dim]")
