"""Local models behind small interfaces.

The heavy modules (llama.cpp bindings, the GGUF writer) load on first use so that
`import memory.llm` stays cheap for commands that never embed anything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from memory.llm.base import Embedder, EmbedderError

if TYPE_CHECKING:
    from memory.llm.convert import convert_minilm, ensure_embedder_gguf, find_model_zip
    from memory.llm.llama_embedder import LlamaEmbedder, load_default_embedder

__all__ = [
    "Embedder",
    "EmbedderError",
    "LlamaEmbedder",
    "convert_minilm",
    "ensure_embedder_gguf",
    "find_model_zip",
    "load_default_embedder",
]

_LAZY = {
    "convert_minilm": "memory.llm.convert",
    "ensure_embedder_gguf": "memory.llm.convert",
    "find_model_zip": "memory.llm.convert",
    "LlamaEmbedder": "memory.llm.llama_embedder",
    "load_default_embedder": "memory.llm.llama_embedder",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
