"""Wiring shared by the CLI and the server: data directory, store, lazy models, project."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from memory.config import Paths, paths
from memory.llm.base import Embedder
from memory.project import Project, resolve_project
from memory.service import LazyEmbedder, Memories
from memory.store import MemoryStore


def embedder_factory(p: Paths, progress: Callable[[str], None] | None = None
                     ) -> Callable[[], Embedder]:
    def load() -> Embedder:
        # Heavy imports (llama.cpp) stay out of start-up paths until a model is needed.
        from memory.llm.convert import ensure_embedder_gguf
        from memory.llm.llama_embedder import LlamaEmbedder

        return LlamaEmbedder(ensure_embedder_gguf(p.models, progress))

    return load


@dataclass
class Context:
    paths: Paths
    store: MemoryStore
    embedder: LazyEmbedder

    def memories(self, project: Project) -> Memories:
        return Memories(self.store, self.embedder, project)


def open_context(home: Path | None = None,
                 progress: Callable[[str], None] | None = None) -> Context:
    p = paths(home)
    store = MemoryStore(p)
    return Context(p, store, LazyEmbedder(embedder_factory(p, progress)))


def open_memories(project: str | None = None, home: Path | None = None,
                  progress: Callable[[str], None] | None = None) -> Memories:
    return open_context(home, progress).memories(resolve_project(project))
