"""A plain NumPy fp32 reference for all-MiniLM-L6-v2, used to check the llama.cpp path.

It reimplements what sentence-transformers does (Hugging Face BertNormalizer,
BertPreTokenizer and WordPiece, then BERT, mean pooling and L2 normalisation) straight from
the files in model.zip, sharing no code with memory.llm so a bug there cannot hide here.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _is_whitespace(c: str) -> bool:
    # Rust's char::is_whitespace (Unicode White_Space); Python's isspace adds \x1c-\x1f.
    return c.isspace() and c not in "\x1c\x1d\x1e\x1f"


def _is_control(c: str) -> bool:
    return c not in "\t\n\r" and unicodedata.category(c).startswith("C")


def _is_punctuation(c: str) -> bool:
    # BERT treats every ASCII non-alphanumeric symbol ($, +, ^, ...) as punctuation too.
    cp = ord(c)
    ascii_punct = 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126
    return ascii_punct or unicodedata.category(c).startswith("P")


def _is_cjk(cp: int) -> bool:
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B920 <= cp <= 0x2CEAF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


class WordPieceTokenizer:
    """Hugging Face's BERT tokenizer pipeline, as configured by tokenizer.json."""

    def __init__(self, spec: dict[str, Any]) -> None:
        model, norm = spec["model"], spec["normalizer"]
        self.vocab: dict[str, int] = model["vocab"]
        self.unk = self.vocab[model["unk_token"]]
        self.prefix: str = model["continuing_subword_prefix"]
        self.max_chars: int = model["max_input_chars_per_word"]
        self.lowercase: bool = norm["lowercase"]
        strip = norm["strip_accents"]
        self.strip_accents: bool = self.lowercase if strip is None else strip
        self.cls, self.sep = self.vocab["[CLS]"], self.vocab["[SEP]"]
        added = [re.escape(t["content"]) for t in spec["added_tokens"] if t["special"]]
        self.specials = re.compile(f"({'|'.join(added)})")

    def normalize(self, text: str) -> str:
        out = []
        for c in text:
            cp = ord(c)
            if cp in (0, 0xFFFD) or _is_control(c):
                continue
            if _is_whitespace(c):
                out.append(" ")
            elif _is_cjk(cp):
                out.append(f" {c} ")  # every CJK character is a word of its own
            else:
                out.append(c)
        text = "".join(out)
        if self.strip_accents:
            text = "".join(c for c in unicodedata.normalize("NFD", text)
                           if unicodedata.category(c) != "Mn")
        # Per character, like Hugging Face: no context-sensitive final sigma.
        return "".join(c.lower() for c in text) if self.lowercase else text

    @staticmethod
    def pre_tokenize(text: str) -> list[str]:
        words: list[str] = []
        current: list[str] = []
        for c in text:
            if _is_whitespace(c) or _is_punctuation(c):
                if current:
                    words.append("".join(current))
                    current = []
                if not _is_whitespace(c):
                    words.append(c)
            else:
                current.append(c)
        if current:
            words.append("".join(current))
        return words

    def word_ids(self, word: str) -> list[int]:
        """Greedy longest-match-first; a word with any unmatched piece becomes [UNK]."""
        if len(word) > self.max_chars:
            return [self.unk]
        ids: list[int] = []
        start = 0
        while start < len(word):
            for end in range(len(word), start, -1):
                piece = word[start:end] if start == 0 else self.prefix + word[start:end]
                if piece in self.vocab:
                    ids.append(self.vocab[piece])
                    start = end
                    break
            else:
                return [self.unk]
        return ids

    def encode(self, text: str, max_length: int | None = None) -> list[int]:
        ids: list[int] = []
        # Added special tokens are matched verbatim in the raw text before normalisation.
        for part in self.specials.split(text):
            if self.specials.fullmatch(part):
                ids.append(self.vocab[part])
            else:
                for word in self.pre_tokenize(self.normalize(part)):
                    ids += self.word_ids(word)
        if max_length is not None:
            ids = ids[: max_length - 2]  # truncate the text, keep [CLS] and [SEP]
        return [self.cls, *ids, self.sep]


def load_safetensors(buf: bytes) -> dict[str, np.ndarray]:
    header_len = int.from_bytes(buf[:8], "little")
    header = json.loads(buf[8 : 8 + header_len])
    dtypes = {"F32": np.float32, "F16": np.float16}
    tensors = {}
    for name, info in header.items():
        if name != "__metadata__" and info["dtype"] in dtypes:  # skips int position_ids
            start, end = info["data_offsets"]
            raw = buf[8 + header_len + start : 8 + header_len + end]
            tensors[name] = np.frombuffer(raw, dtypes[info["dtype"]]).reshape(info["shape"])
    return {k: v.astype(np.float32) for k, v in tensors.items()}


def _erf(x: np.ndarray) -> np.ndarray:
    # Abramowitz & Stegun 7.1.26: |error| < 1.5e-7, about float32 resolution.
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741
                + t * (-1.453152027 + t * 1.061405429))))
    return sign * (1.0 - poly * np.exp(-a * a))


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))  # BERT's exact (erf) GELU


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


class BertReference:
    """Sentence embeddings computed the sentence-transformers way, in fp32 NumPy."""

    def __init__(self, model_zip: Path) -> None:
        with zipfile.ZipFile(model_zip) as zf:
            self.config = json.loads(zf.read("config.json"))
            self.tokenizer = WordPieceTokenizer(json.loads(zf.read("tokenizer.json")))
            self.max_length = json.loads(zf.read("sentence_bert_config.json"))["max_seq_length"]
            self.w = load_safetensors(zf.read("model.safetensors"))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        w, cfg = self.w, self.config
        eps, n_head = cfg["layer_norm_eps"], cfg["num_attention_heads"]
        seqs = [self.tokenizer.encode(t, self.max_length) for t in texts]
        n = max(len(s) for s in seqs)
        ids = np.zeros((len(seqs), n), dtype=np.int64)  # padded with [PAD] = 0
        mask = np.zeros((len(seqs), n), dtype=np.float32)
        for i, s in enumerate(seqs):
            ids[i, : len(s)], mask[i, : len(s)] = s, 1.0

        x = (w["embeddings.word_embeddings.weight"][ids]
             + w["embeddings.position_embeddings.weight"][:n]
             + w["embeddings.token_type_embeddings.weight"][0])  # every token is segment A
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
        # Padded keys get a large negative score so softmax ignores them.
        key_bias = ((1.0 - mask) * -1e9)[:, None, None, :]

        def linear(h: np.ndarray, name: str) -> np.ndarray:
            return h @ w[name + ".weight"].T + w[name + ".bias"]

        b, d = x.shape[0], x.shape[-1] // n_head
        for layer in range(cfg["num_hidden_layers"]):
            p = f"encoder.layer.{layer}."

            def heads(h: np.ndarray) -> np.ndarray:
                return h.reshape(b, n, n_head, d).transpose(0, 2, 1, 3)

            q, k, v = (heads(linear(x, f"{p}attention.self.{m}")) for m in ("query", "key",
                                                                             "value"))
            scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(d) + key_bias
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            ctx = (scores / scores.sum(-1, keepdims=True)) @ v
            ctx = ctx.transpose(0, 2, 1, 3).reshape(b, n, n_head * d)
            x = _layer_norm(x + linear(ctx, p + "attention.output.dense"),
                            w[p + "attention.output.LayerNorm.weight"],
                            w[p + "attention.output.LayerNorm.bias"], eps)
            ffn = linear(_gelu(linear(x, p + "intermediate.dense")), p + "output.dense")
            x = _layer_norm(x + ffn, w[p + "output.LayerNorm.weight"],
                            w[p + "output.LayerNorm.bias"], eps)

        pooled = (x * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
        pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
        return pooled.astype(np.float32)
