"""Wiring shared by the CLI and the server: data directory, store, lazy models, project."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from memory.config import Paths, paths
from memory.llm.base import Embedder
from memory.project import Project, resolve_project
from memory.service import LazyEmbedder, Memories
from memory.store import MemoryStore

Status = Callable[[str], AbstractContextManager[object]]


def embedder_factory(p: Paths, status: Status | None = None) -> Callable[[], Embedder]:
    """A loader for the embedder. `status(message)` (e.g. a spinner) is shown while the model
    is being prepared (its one-time conversion); nothing is shown when it is cached."""

    def load() -> Embedder:
        # Heavy imports (llama.cpp) stay out of start-up paths until a model is needed.
        from memory.llm.convert import ensure_embedder_gguf
        from memory.llm.llama_embedder import LlamaEmbedder

        shown: list[AbstractContextManager[object]] = []

        def on_progress(message: str) -> None:
            if status is not None and not shown:
                shown.append(status(message))
                shown[0].__enter__()

        try:
            path = ensure_embedder_gguf(p.models, on_progress)
        finally:
            if shown:
                shown[0].__exit__(None, None, None)
        return LlamaEmbedder(path)

    return load


@dataclass
class Context:
    paths: Paths
    store: MemoryStore
    embedder: LazyEmbedder

    def memories(self, project: Project) -> Memories:
        return Memories(self.store, self.embedder, project)


def open_context(home: Path | None = None, status: Status | None = None) -> Context:
    p = paths(home)
    store = MemoryStore(p)
    return Context(p, store, LazyEmbedder(embedder_factory(p, status)))


def open_memories(project: str | None = None, home: Path | None = None,
                  status: Status | None = None) -> Memories:
    return open_context(home, status).memories(resolve_project(project))
