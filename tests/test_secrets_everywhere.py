"""The secret corpus pushed through every capture path: CLI, import, MCP tools, git capture,
the doc watcher and Claude Code's transcript hook. No secret may reach any file under the data
directory, an export or a tool's output; text that merely looks random stays intact."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import anyio

from tests.conftest import CliRunner, git
from tests.secrets_corpus import LOOKALIKES, SECRETS
from tests.test_mcp_server import ok, stdio_session, text_of

# One secret per line keeps the fragments apart (and under the 32,000-character limit).
SECRET_DOC = "\n\n".join(text for text, _, _ in SECRETS)
LOOKALIKE_DOC = "\n\n".join(LOOKALIKES)


def leaks(text: str) -> list[str]:
    return [kind for _, secret, kind in SECRETS if secret in text]


def assert_data_dir_clean(home: Path) -> None:
    """Every byte of every file under the data dir (table, index, logs, state)."""
    blobs = [(f, f.read_bytes()) for f in home.rglob("*") if f.is_file()
             and f.parent.name != "models"]
    assert blobs
    for _, secret, kind in SECRETS:
        needle = secret.encode()
        found = [str(f.relative_to(home)) for f, data in blobs if needle in data]
        assert not found, f"{kind} secret on disk in {found}"


def assert_export_clean(cli: CliRunner, project: str, must_keep: list[str]) -> None:
    exported = cli("export", "--project", project)
    assert exported.code == 0, exported.stderr
    assert not leaks(exported.stdout)
    assert "[REDACTED:" in exported.stdout
    for text in must_keep:
        assert text in exported.stdout, text


def test_cli_add_and_import(cli: CliRunner, home: Path, tmp_path: Path) -> None:
    added = cli("add", "-", "--project", "sec", "--json", input=SECRET_DOC)
    assert added.code == 0, added.stderr
    assert not leaks(added.stdout + added.stderr)
    kept = cli("add", "-", "--project", "sec", input=LOOKALIKE_DOC)
    assert kept.code == 0, kept.stderr

    lines = [json.dumps({"text": text, "title": f"imported {n}", "kind": "fact"})
             for n, (text, _, _) in enumerate(SECRETS)]
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text("\n".join(lines) + "\n")
    imported = cli("import", str(jsonl), "--project", "imp", "--json")
    assert imported.code == 0, imported.stderr
    assert not leaks(imported.stdout + imported.stderr)

    found = cli("search", "deploy key token password", "--project", "sec", "--json")
    assert found.code == 0 and not leaks(found.stdout)
    assert_export_clean(cli, "sec", [LOOKALIKES[0], LOOKALIKES[-1]])
    assert_export_clean(cli, "imp", [])
    assert_data_dir_clean(home)


def test_mcp_tools(home: Path) -> None:
    outputs: list[str] = []

    async def run() -> None:
        async with stdio_session(home) as client:
            stored = ok(await client.call_tool("remember", {"content": SECRET_DOC}))
            outputs.append(json.dumps(stored))
            for tool, args in (("recall", {"query": "api key token password secret"}),
                               ("get", {"ids": [stored["id"]]}),
                               ("briefing", {})):
                result = await client.call_tool(tool, args)
                outputs.append(text_of(result) + json.dumps(result.structured_content))
            updated = await client.call_tool("update", {"id": stored["id"],
                                                        "content": SECRETS[0][0] + " (rotated)"})
            outputs.append(text_of(updated) + json.dumps(updated.structured_content))

    anyio.run(run)
    joined = "\n".join(outputs)
    assert "[REDACTED:" in joined
    assert not leaks(joined)
    assert_data_dir_clean(home)


def test_git_commit_capture(cli: CliRunner, home: Path, make_repo: Callable[[str], Path]
                            ) -> None:
    repo = make_repo("secrets")
    (repo / "app.py").write_text("print('hi')\n")
    git(repo, "add", "app.py")
    # Half the corpus per commit keeps each message a realistic size.
    half = len(SECRETS) // 2
    for n, chunk in enumerate((SECRETS[:half], SECRETS[half:])):
        (repo / "app.py").write_text(f"print({n})\n")
        git(repo, "add", "app.py")
        message = f"Rotate credentials {n}\n\n" + "\n".join(t for t, _, _ in chunk)
        git(repo, "commit", "-q", "-m", message)
    captured = cli("capture", "git", "--repo", str(repo), "--json")
    assert captured.code == 0, captured.stderr
    assert not leaks(captured.stdout + captured.stderr)
    assert_export_clean(cli, str(repo), [])
    assert_data_dir_clean(home)


def test_doc_watcher(cli: CliRunner, home: Path, make_repo: Callable[[str], Path]) -> None:
    repo = make_repo("docs")
    sections = [f"## Setup step {n}\n\n{text}\n" for n, (text, _, _) in enumerate(SECRETS)]
    (repo / "docs").mkdir()
    (repo / "docs" / "setup.md").write_text("# Setup\n\n" + "\n".join(sections)
                                           + "\n## Checksums\n\n" + LOOKALIKE_DOC + "\n")
    synced = cli("watch", "--once", "--json", "--project", str(repo))
    assert synced.code == 0, synced.stderr
    assert not leaks(synced.stdout + synced.stderr)
    assert_export_clean(cli, str(repo), [LOOKALIKES[0]])
    assert_data_dir_clean(home)


def test_claude_transcript_capture(cli: CliRunner, home: Path, tmp_path: Path,
                                   make_repo: Callable[[str], Path]) -> None:
    from integrations.transcript import Turn, extract
    from tests.test_claude import HOOK_ENV, payload, wait_drained

    repo = make_repo("claude")
    # One secret per message, said as a convention (what capture keeps); a session stores at
    # most 8 memories per run, so the corpus is spread over sessions of 8 messages.
    said = [f"From now on, always deploy staging with this: {text.replace('. ', '; ')}"
            for text, _, _ in SECRETS]
    # Capture keeps single-line statements: multi-line ones (key blocks, YAML) are not
    # captured at all (safe), the rest must arrive redacted.
    said = [s for s in said if extract([Turn("user", s)])]
    assert len(said) >= 50
    for n in range(0, len(said), 8):
        transcript = tmp_path / f"session-{n}.jsonl"
        lines = []
        for m, text in enumerate(said[n:n + 8]):
            role = "user" if m % 2 else "assistant"
            content = text if role == "user" else [{"type": "text", "text": text}]
            lines.append(json.dumps({"type": role, "sessionId": f"s-{n}",
                                     "message": {"role": role, "content": content}}))
        transcript.write_text("\n".join(lines) + "\n")
        hook = json.loads(payload("Stop", repo, transcript))
        hook["session_id"] = f"s-{n}"
        r = cli("hook", "claude", "Stop", env=HOOK_ENV, input=json.dumps(hook))
        assert r.code == 0 and r.stdout == "" and not leaks(r.stderr)
        wait_drained(home)
    exported = cli("export", "--project", str(repo)).stdout
    # The path is really exercised: nearly every statement was captured (texts that redact
    # to near-identical ones are deduplicated), each with its redaction marker.
    # (A multi-line statement is captured by its first line only: "[pypi]" carries no secret.)
    marked = [line for line in exported.splitlines() if "[REDACTED:" in line]
    assert len(marked) >= 0.9 * len(said)
    assert_export_clean(cli, str(repo), [])
    assert_data_dir_clean(home)
