"""Shared fixtures: real stores in temp dirs, one converted model per test session,
and a runner for the real `memctl` CLI in subprocesses."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from memory.config import paths
from memory.llm.convert import ensure_embedder_gguf
from memory.project import Project
from memory.service import LazyEmbedder, Memories
from memory.store import MemoryStore


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("models")
    ensure_embedder_gguf(d)
    return d


@pytest.fixture(scope="session")
def embedder(models_dir: Path):
    from memory.llm.llama_embedder import load_default_embedder

    return load_default_embedder(models_dir)


def seed_models(home: Path, models_dir: Path) -> None:
    """Give a fresh data dir the already converted model (hard links: no copy, no reconvert)."""
    target = home / "models"
    target.mkdir(parents=True, exist_ok=True)
    for f in models_dir.iterdir():
        if f.is_file() and not (target / f.name).exists():
            try:
                os.link(f, target / f.name)
            except OSError:
                shutil.copy2(f, target / f.name)


@pytest.fixture
def home(tmp_path: Path, models_dir: Path) -> Path:
    h = tmp_path / "memctl-home"
    seed_models(h, models_dir)
    return h


@pytest.fixture
def store(home: Path) -> MemoryStore:
    return MemoryStore(paths(home))


@pytest.fixture
def mem(store: MemoryStore, embedder) -> Memories:
    return Memories(store, LazyEmbedder(lambda: embedder), Project("test", "test"))


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self):
        return json.loads(self.stdout)


CliRunner = Callable[..., Result]


@pytest.fixture
def cli(home: Path, tmp_path: Path) -> Iterator[CliRunner]:
    workdir = tmp_path / "work"
    workdir.mkdir(exist_ok=True)

    def run(*args: str, input: str | bytes | None = None, cwd: Path | None = None,
            env: dict[str, str] | None = None, timeout: float = 120) -> Result:
        full_env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("MEMCTL_", "XDG_"))}
        full_env.update({"MEMCTL_HOME": str(home), "COLUMNS": "200", "NO_COLOR": "1"})
        full_env.update(env or {})
        data = input.encode() if isinstance(input, str) else input
        proc = subprocess.run([sys.executable, "-m", "memory.cli", *args], input=data,
                              capture_output=True, cwd=cwd or workdir, env=full_env,
                              timeout=timeout)
        return Result(proc.returncode, proc.stdout.decode("utf-8", "replace"),
                      proc.stderr.decode("utf-8", "replace"))

    yield run


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "t@example.com"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True,
                          text=True).stdout


@pytest.fixture
def make_repo(tmp_path: Path) -> Callable[[str], Path]:
    def make(name: str) -> Path:
        root = tmp_path / "repos" / name
        root.mkdir(parents=True)
        git(root, "init", "-q", "-b", "main")
        return root

    return make


def memctl_processes(home: Path, needle: bytes = b"mcp_server") -> list[int]:
    """Live (not zombie) processes whose command line contains `needle` and whose
    environment names `home` as MEMCTL_HOME: a test's servers and their store workers."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if needle in cmdline and f"MEMCTL_HOME={home}".encode() in environ and state != "Z":
            pids.append(int(entry.name))
    return pids


def gone_within(home: Path, seconds: float, needle: bytes = b"mcp_server") -> bool:
    """True once no such process is left (a store worker exits just after its server)."""
    import time

    deadline = time.monotonic() + seconds
    while memctl_processes(home, needle):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True
