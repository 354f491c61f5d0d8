"""Sentence embeddings from a GGUF BERT model through llama.cpp's C API.

This uses the low-level `llama_cpp` bindings rather than `llama_cpp.Llama`: with
verbose=False, `Llama` silences llama.cpp by dup2-ing file descriptors 1 and 2 to /dev/null
while the model loads, which would swallow whatever another thread writes meanwhile (for the
MCP server, stdout is the protocol channel); with verbose=True it prints to stderr. Here a
no-op log callback keeps llama.cpp quiet without touching any file descriptor.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import queue
import re
import threading
import unicodedata
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import llama_cpp
import numpy as np

from memory.llm.base import EmbedderError, default_contexts
from memory.llm.convert import KEY_MAX_SEQ_LENGTH, ensure_embedder_gguf

# Sequences encoded together in one llama_encode call. Packing short texts amortises the
# per-call overhead, but attention spans the whole packed batch: llama.cpp's CPU attention
# reads the mask of every other sequence's tokens, a cost that grows with the batch (23% of
# encode time at 512 tokens, 12% at 128, by `perf`), while smaller batches reuse the weights
# less. 256 was 4% faster than 512 over 12 alternating runs of 1,500 synthetic memories.
_BATCH_TOKENS = 256
_MAX_SEQS = 64

_log_lock = threading.Lock()
_log_callback: object | None = None
_recent_errors: collections.deque[str] = collections.deque(maxlen=8)
_backend_ready = False


def _quiet_llama() -> None:
    """Route llama.cpp/ggml logging to a no-op that only remembers recent errors.

    The ctypes callback object must stay referenced for as long as C may call it, hence
    the module global.
    """
    global _log_callback, _backend_ready
    with _log_lock:
        if _log_callback is None:

            def _on_log(level: int, text: bytes | None, _user_data: ctypes.c_void_p) -> None:
                if level == 3 and text:  # GGML_LOG_LEVEL_ERROR: kept for error messages
                    _recent_errors.append(text.decode("utf-8", "replace").strip())

            _log_callback = llama_cpp.llama_log_callback(_on_log)
            llama_cpp.llama_log_set(_log_callback, ctypes.c_void_p(0))
        if not _backend_ready:
            llama_cpp.llama_backend_init()
            _backend_ready = True


def _last_error() -> str:
    return _recent_errors[-1] if _recent_errors else "no details from llama.cpp"


# Hugging Face's BertNormalizer deletes every control/format/unassigned character (except
# tab, newline, CR) and decomposes Hangul syllables; its WordPiece turns words longer than
# 100 characters into [UNK]. llama.cpp's WPM tokenizer instead treats \v, \f and U+0085 as
# spaces, keeps unassigned code points (making the word [UNK]), leaves Hangul composed and
# splits arbitrarily long words into pieces. Doing these steps here first makes its ids
# match sentence-transformers'; the rest (NFD, accents, case, punctuation) it already does.
_ASCII_CONTROLS = {c: None for c in [*range(32), 127] if chr(c) not in "\t\n\r"}
_MAX_WORD_CHARS = 100
_LONG_RUN = re.compile(rf"\S{{{_MAX_WORD_CHARS + 1},}}")
# Whitespace that every tokenizer involved treats as a word break (\x1c-\x1f and friends
# are deleted as control characters instead, so they may sit inside a word).
_WORD_BREAK = re.compile(r"[ \t\n\r]")


def _match_hf_normalizer(text: str) -> str:
    if text.isascii():
        text = text.translate(_ASCII_CONTROLS)
    else:
        text = "".join(c for c in unicodedata.normalize("NFD", text)
                       if c in "\t\n\r" or unicodedata.category(c)[0] != "C")
    # Words never span whitespace, so without a long non-space run there is no long word.
    return _unk_long_words(text) if _LONG_RUN.search(text) else text


def _unk_long_words(text: str) -> str:
    out: list[str] = []
    word: list[str] = []

    def flush() -> None:
        if word:
            # Accents are stripped before Hugging Face counts characters.
            n = sum(unicodedata.category(c) != "Mn" for c in word)
            out.append("[UNK]" if n > _MAX_WORD_CHARS else "".join(word))
            word.clear()

    for c in text:
        if c.isspace() or _splits_words(c):
            flush()
            out.append(c)
        else:
            word.append(c)
    flush()
    return "".join(out)


def _splits_words(c: str) -> bool:
    """BERT pre-tokenizer boundaries: punctuation, ASCII symbols and CJK ideographs."""
    cp = ord(c)
    if cp < 128:
        return not c.isalnum()
    return (unicodedata.category(c)[0] == "P" or 0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF
            or 0x20000 <= cp <= 0x2A6DF or 0x2A700 <= cp <= 0x2B81F or 0x2B920 <= cp <= 0x2CEAF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


@dataclass(frozen=True, slots=True)
class _Slot:
    ctx: Any
    batch: Any


class LlamaEmbedder:
    """An `Embedder` over a GGUF BERT model with mean pooling; thread-safe."""

    def __init__(
        self,
        model_path: Path,
        *,
        n_threads: int | None = None,
        max_tokens: int | None = None,
        contexts: int | None = None,
    ) -> None:
        """`contexts`: most llama.cpp contexts (each single-threaded) that embed at once: a
        large batch is split across them, and concurrent callers each get one. Default: one
        per core, at most 4."""
        self._model = self._vocab = None
        self._cparams: Any = None
        self._slots: list[_Slot] = []  # every context made so far, free or in use
        self._free: queue.SimpleQueue[_Slot] = queue.SimpleQueue()
        self._max_contexts = max(1, contexts if contexts is not None else default_contexts())
        self._lock = threading.Lock()  # guards _slots, _users and close()
        self._idle = threading.Condition(self._lock)  # notified when _users drops to 0
        self._users = 0  # calls in progress: close() waits for them
        path = Path(model_path)
        if not path.is_file():
            raise EmbedderError(f"embedding model file not found: {path}")
        _quiet_llama()
        _recent_errors.clear()

        mparams = llama_cpp.llama_model_default_params()
        mparams.n_gpu_layers = 0
        # No "extra" buffer types (AMX, weight repacking). ggml picks AMX for Q8_0 whenever
        # CPUID advertises it, but some VMs advertise AMX without enabling its register
        # state and the first matmul dies with SIGILL/SIGSEGV. For a 22M-parameter model the
        # plain CPU kernels are just as fast, and the weights stay mmapped, unduplicated.
        mparams.use_extra_bufts = False
        self._model = llama_cpp.llama_model_load_from_file(str(path).encode(), mparams)
        if not self._model:
            raise EmbedderError(f"llama.cpp cannot load {path}: {_last_error()}")
        try:
            self._init_context(path, n_threads, max_tokens)
        except BaseException:
            self.close()
            raise

    def _init_context(self, path: Path, n_threads: int | None, max_tokens: int | None) -> None:
        n_ctx_train = llama_cpp.llama_model_n_ctx_train(self._model)
        # Truncate where sentence-transformers does (recorded by the converter), and never
        # past the position table, which llama.cpp would index out of bounds.
        limits = [n_ctx_train, self._meta_int(KEY_MAX_SEQ_LENGTH) or n_ctx_train]
        limit = min([*limits, max_tokens] if max_tokens else limits)
        if limit < 2:
            raise EmbedderError(f"{path}: unusable maximum sequence length {limit}")
        self._max_tokens = limit
        self._batch_tokens = max(_BATCH_TOKENS, limit)
        self._dim = llama_cpp.llama_model_n_embd(self._model)
        # One thread: with two, each call stalls ~0.8 s whenever the other core is busy.
        threads = n_threads or 1

        cparams = llama_cpp.llama_context_default_params()
        cparams.n_ctx = n_ctx_train
        # A non-causal encoder must see a whole batch in one micro-batch.
        cparams.n_batch = cparams.n_ubatch = self._batch_tokens
        cparams.n_seq_max = _MAX_SEQS
        cparams.n_threads = cparams.n_threads_batch = threads
        cparams.embeddings = True
        cparams.pooling_type = llama_cpp.LLAMA_POOLING_TYPE_MEAN
        cparams.attention_type = llama_cpp.LLAMA_ATTENTION_TYPE_NON_CAUSAL
        cparams.no_perf = True
        # flash_attn_type stays AUTO, which turns it on for CPU: 2x faster on packed batches.
        self._cparams = cparams
        self._path = path
        self._vocab = llama_cpp.llama_model_get_vocab(self._model)
        self._free.put(self._new_slot())

    def _new_slot(self) -> _Slot:
        """A context of its own (weights are shared) with its own token batch."""
        ctx = llama_cpp.llama_init_from_model(self._model, self._cparams)
        if not ctx:
            raise EmbedderError(f"llama.cpp cannot create a context for {self._path}: "
                                f"{_last_error()}")
        if llama_cpp.llama_pooling_type(ctx) != llama_cpp.LLAMA_POOLING_TYPE_MEAN:
            llama_cpp.llama_free(ctx)
            raise EmbedderError(f"{self._path}: llama.cpp did not enable mean pooling")
        # One sequence id per token is all we ever assign.
        slot = _Slot(ctx, llama_cpp.llama_batch_init(self._batch_tokens, 0, 1))
        self._slots.append(slot)
        return slot

    def _take(self) -> _Slot:
        """A free context: an idle one, a new one while under the limit, else wait."""
        try:
            return self._free.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            if len(self._slots) < self._max_contexts:
                return self._new_slot()
        return self._free.get()

    @contextlib.contextmanager
    def _in_use(self) -> Iterator[None]:
        """Count a call in progress, so that close() never frees what it is using."""
        with self._lock:
            if self._model is None:
                raise EmbedderError("the embedder is closed")
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if not self._users:
                    self._idle.notify_all()

    def _meta_int(self, key: str) -> int | None:
        buf = ctypes.create_string_buffer(32)
        n = llama_cpp.llama_model_meta_val_str(self._model, key.encode(), buf, len(buf))
        try:
            return int(buf.value) if n > 0 else None
        except ValueError:
            return None

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def max_tokens(self) -> int:
        """Longest token sequence (including [CLS] and [SEP]) embedded without truncation."""
        return self._max_tokens

    def tokenize(self, text: str) -> list[int]:
        """WordPiece ids for `text` as embedded: with [CLS]/[SEP], without truncation.

        Literal special tokens in the text ("[MASK]", "[SEP]", ...) map to their ids, as in
        Hugging Face tokenizers.
        """
        with self._in_use():
            return self._tokenize(text)

    def _tokenize(self, text: str) -> list[int]:
        if self._vocab is None:
            raise EmbedderError("the embedder is closed")
        # Lone surrogates (category Cs) are dropped by the normaliser, so this cannot fail.
        data = _match_hf_normalizer(text).encode("utf-8")
        # Every token consumes at least one byte, plus [CLS] and [SEP].
        capacity = len(data) + 2
        buf = (llama_cpp.llama_token * capacity)()
        n = llama_cpp.llama_tokenize(self._vocab, data, len(data), buf, capacity, True, True)
        if n < 0:
            raise EmbedderError(f"llama.cpp could not tokenize a {len(data)}-byte text")
        return buf[:n]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of strings; wrap a single text in a list")
        with self._in_use():
            return self._embed(texts)

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        seqs = [self._truncate(self._tokenize_head(t)) for t in texts]
        groups: list[tuple[int, int]] = []  # micro-batches: [start, end) of seqs
        start = 0
        while start < len(seqs):
            end, used = start, 0
            while (end < len(seqs) and end - start < _MAX_SEQS
                   and used + len(seqs[end]) <= self._batch_tokens):
                used += len(seqs[end])
                end += 1
            groups.append((start, end))
            start = end

        def encode(group: tuple[int, int]) -> None:
            slot = self._take()
            try:
                self._encode(slot, seqs[group[0]:group[1]], out[group[0]:group[1]])
            finally:
                self._free.put(slot)

        if len(groups) > 1 and self._max_contexts > 1:
            # llama.cpp runs without the GIL: one single-threaded context per core, no
            # cross-thread barrier (which stalls whenever another process holds a core).
            with ThreadPoolExecutor(min(self._max_contexts, len(groups)),
                                    thread_name_prefix="memctl-embed") as pool:
                list(pool.map(encode, groups))
        else:
            for group in groups:
                encode(group)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)

    def _tokenize_head(self, text: str) -> list[int]:
        """Tokens of `text`, or of a prefix of it with the same first `max_tokens` ids.

        Tokenizing a megabyte takes seconds and all but 256 tokens are thrown away. A cut at
        an ASCII space/tab/newline never splits a word (normalisation is per character and
        special tokens contain no whitespace), so the prefix's ids are the full text's first
        ids; once it yields more than `max_tokens`, truncation cannot tell the difference.
        """
        size = self._max_tokens * 8  # a generous number of characters per token to start
        while size < len(text):
            cut = _WORD_BREAK.search(text, size)
            if cut is None:
                break
            tokens = self._tokenize(text[: cut.start()])
            if len(tokens) > self._max_tokens:
                return tokens
            size *= 4
        return self._tokenize(text)

    def _truncate(self, tokens: list[int]) -> list[int]:
        # Cut the text, keep the trailing [SEP], as Hugging Face truncation does.
        if len(tokens) <= self._max_tokens:
            return tokens
        return [*tokens[: self._max_tokens - 1], tokens[-1]]

    def _encode(self, slot: _Slot, seqs: list[list[int]], out: np.ndarray) -> None:
        batch, ctx = slot.batch, slot.ctx
        k = 0
        for seq_id, tokens in enumerate(seqs):
            for pos, token in enumerate(tokens):
                batch.token[k] = token
                batch.pos[k] = pos
                batch.n_seq_id[k] = 1
                batch.seq_id[k][0] = seq_id
                batch.logits[k] = 1
                k += 1
        batch.n_tokens = k
        rc = llama_cpp.llama_encode(ctx, batch)
        if rc != 0:
            raise EmbedderError(f"llama.cpp failed to embed (code {rc}): {_last_error()}")
        for seq_id in range(len(seqs)):
            ptr = llama_cpp.llama_get_embeddings_seq(ctx, seq_id)
            if not ptr:
                raise EmbedderError("llama.cpp returned no pooled embedding")
            out[seq_id] = np.ctypeslib.as_array(ptr, shape=(self._dim,))

    def close(self) -> None:
        """Free the llama.cpp objects; safe to call twice."""
        with self._lock:
            while self._users:  # calls in progress finish first
                self._idle.wait()
            for slot in self._slots:
                llama_cpp.llama_batch_free(slot.batch)
                llama_cpp.llama_free(slot.ctx)
            self._slots = []
            self._free = queue.SimpleQueue()
            if self._model:
                llama_cpp.llama_model_free(self._model)
            self._model = self._vocab = None

    def __enter__(self) -> LlamaEmbedder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        # Interpreter shutdown may already have torn down the bindings.
        with contextlib.suppress(Exception):
            self.close()


def load_default_embedder(models_dir: Path) -> LlamaEmbedder:
    """Convert (once) and load the bundled all-MiniLM-L6-v2."""
    return LlamaEmbedder(ensure_embedder_gguf(models_dir))
