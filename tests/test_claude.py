"""`memctl install|uninstall claude` on real config files, and the Claude Code hooks run as
real subprocesses with Claude Code's JSON on stdin, on a real store."""

from __future__ import annotations

import json
import os
import random
import select
import string
import subprocess
import sys
import time
from pathlib import Path

import pytest

from integrations import claude_hooks
from integrations.transcript import turn_of
from memory.config import paths
from memory.project import resolve_project
from memory.service import LazyEmbedder, Memories
from memory.store import MemoryStore

FIXTURE = Path(__file__).parent / "fixtures" / "claude_transcript.jsonl"
SESSION = "3f9c2b1e-8d4a-4c7e-9b21-6a5d0e7f1c34"
# The fixture holds a placeholder where a leaked token goes (no token-shaped string is kept
# in the repository); tests put a fake one, generated at run time, in its place.
PLACEHOLDER = "__GITHUB_TOKEN__"
SECRET = "ghp_" + "".join(random.choices(string.ascii_letters + string.digits, k=36))
# Hooks give up silently past a time budget; tests assert behaviour, so a loaded test machine
# must not make them give up (one test lowers it on purpose).
HOOK_ENV = {"MEMCTL_HOOK_BUDGET": "600"}

MCP_JSON = {"mcpServers": {"github": {"command": "npx",
                                      "args": ["-y", "@modelcontextprotocol/server-github"]}}}
SETTINGS = {
    "permissions": {"allow": ["Bash(npm test:*)"], "deny": []},
    "hooks": {
        "Stop": [{"hooks": [{"type": "command", "command": "notify-send done"}]}],
        "PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command",
                                                      "command": "./scripts/check.sh"}]}],
    },
    "model": "sonnet",
}


def write_json(path: Path, data: object) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path.read_bytes()


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and ".git" not in p.relative_to(root).parts}


def payload(event: str, cwd: Path, transcript: Path | None = None, **extra: object) -> str:
    return json.dumps({"session_id": SESSION, "transcript_path": str(transcript or FIXTURE),
                       "cwd": str(cwd), "permission_mode": "default",
                       "hook_event_name": event, **extra})


def memories(home: Path, embedder, root: Path) -> Memories:
    """The project's memories as the hooks resolve it (the git root of `cwd`)."""
    return Memories(MemoryStore(paths(home)), LazyEmbedder(lambda: embedder),
                    resolve_project(None, cwd=root))


def log_text(home: Path) -> str:
    path = home / "logs" / "hooks.log"
    return path.read_text(encoding="utf-8") if path.exists() else ""


def wait_drained(home: Path, timeout: float = 300) -> None:
    """Wait until the background drain has stored every queued capture."""
    spool = home / "state" / "claude" / "spool"
    deadline = time.monotonic() + timeout
    while spool.exists() and any(p.suffix == ".json" for p in spool.iterdir()):
        if time.monotonic() > deadline:
            pytest.fail(f"captures still queued after {timeout}s; log:\n{log_text(home)}")
        time.sleep(0.2)


# -- install / uninstall -----------------------------------------------------------------------
def test_install_merges_is_idempotent_and_uninstall_restores(cli, make_repo) -> None:
    repo = make_repo("app")
    mcp, settings = repo / ".mcp.json", repo / ".claude" / "settings.json"
    mcp_before, settings_before = write_json(mcp, MCP_JSON), write_json(settings, SETTINGS)

    r = cli("install", "claude", cwd=repo)
    assert r.code == 0, r.stderr
    assert f"updated: {mcp}" in r.stdout
    servers = json.loads(mcp.read_text())["mcpServers"]
    assert servers["github"] == MCP_JSON["mcpServers"]["github"]
    assert servers["memctl"]["command"] == sys.executable
    assert servers["memctl"]["args"] == ["-m", "memory", "serve", "--project", str(repo)]
    data = json.loads(settings.read_text())
    assert data["permissions"] == SETTINGS["permissions"] and data["model"] == "sonnet"
    assert data["hooks"]["PreToolUse"] == SETTINGS["hooks"]["PreToolUse"]
    stop = [h["command"] for g in data["hooks"]["Stop"] for h in g["hooks"]]
    assert stop[0] == "notify-send done" and stop[1].endswith("-m integrations.claude_hooks Stop")
    for event in ("SessionStart", "UserPromptSubmit", "PreCompact", "Stop"):
        assert any(h["command"].startswith("MEMCTL_HOME=") and sys.executable in h["command"]
                   for g in data["hooks"][event] for h in g["hooks"]), event

    installed = tree(repo)
    again = cli("install", "claude", "--repo", str(repo))
    assert again.code == 0 and "already installed" in again.stdout
    assert tree(repo) == installed  # byte-identical

    r = cli("uninstall", "claude", cwd=repo)
    assert r.code == 0, r.stderr
    assert mcp.read_bytes() == mcp_before and settings.read_bytes() == settings_before
    assert "not installed" in cli("uninstall", "claude", cwd=repo).stdout


def test_install_creates_files_and_uninstall_removes_them(cli, make_repo) -> None:
    repo = make_repo("fresh")
    (repo / "README.md").write_text("hello\n")
    before = tree(repo)
    r = cli("install", "claude", "--json", cwd=repo)
    assert r.code == 0, r.stderr
    actions = {c["path"]: c["action"] for c in r.json()["changes"]}
    assert actions == {str(repo / ".mcp.json"): "create",
                       str(repo / ".claude" / "settings.json"): "create"}
    assert cli("uninstall", "claude", cwd=repo).code == 0
    assert tree(repo) == before
    assert not (repo / ".claude").exists()


def test_dry_run_shows_a_diff_and_writes_nothing(cli, make_repo) -> None:
    repo = make_repo("dry")
    mcp_before = write_json(repo / ".mcp.json", MCP_JSON)
    r = cli("install", "claude", "--dry-run", cwd=repo)
    assert r.code == 0, r.stderr
    assert f"+++ {repo / '.mcp.json'}" in r.stdout and '+    "memctl": {' in r.stdout
    assert "claude_hooks SessionStart" in r.stdout and "nothing was written" in r.stdout
    assert (repo / ".mcp.json").read_bytes() == mcp_before
    assert not (repo / ".claude").exists()
    r = cli("install", "claude", "--dry-run", "--json", cwd=repo)
    report = r.json()
    assert report["dry_run"] and all(c["diff"] for c in report["changes"])
    assert cli("install", "claude", cwd=repo).code == 0
    installed = tree(repo)
    r = cli("uninstall", "claude", "--dry-run", cwd=repo)
    assert "would delete" in r.stdout and tree(repo) == installed


def test_invalid_config_is_refused_untouched(cli, make_repo) -> None:
    repo = make_repo("broken")
    settings = repo / ".claude" / "settings.json"
    settings.parent.mkdir()
    settings.write_text('{"hooks": {"Stop": [}\n')
    r = cli("install", "claude", cwd=repo)
    assert r.code == 2
    assert "not valid JSON" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert settings.read_text() == '{"hooks": {"Stop": [}\n'
    assert not (repo / ".mcp.json").exists()  # nothing is written when any file is refused
    settings.write_text('{"hooks": ["not", "an", "object"]}\n')
    r = cli("install", "claude", cwd=repo)
    assert r.code == 2 and "'hooks' is not a JSON object" in r.stderr
    outside = cli("install", "claude")  # the fixture's work dir is not in a git repository
    assert outside.code == 2 and "--repo" in outside.stderr


def test_user_scope_honours_home(cli, tmp_path: Path) -> None:
    home = tmp_path / "user-home"
    claude_json = home / ".claude.json"
    before = write_json(claude_json, {"numStartups": 12, "theme": "dark",
                                      "projects": {"/src/x": {"allowedTools": []}}})
    env = {"HOME": str(home)}
    r = cli("install", "claude", "--scope", "user", env=env)
    assert r.code == 0, r.stderr
    data = json.loads(claude_json.read_text())
    assert data["numStartups"] == 12 and data["projects"] == {"/src/x": {"allowedTools": []}}
    assert data["mcpServers"]["memctl"]["args"] == ["-m", "memory", "serve"]  # no pin
    hooks = json.loads((home / ".claude" / "settings.json").read_text())["hooks"]
    assert set(hooks) == {"SessionStart", "UserPromptSubmit", "PreCompact", "Stop"}
    assert cli("uninstall", "claude", "--scope", "user", env=env).code == 0
    assert claude_json.read_bytes() == before
    assert not (home / ".claude").exists()


def test_registered_commands_run_without_path(cli, make_repo, home: Path, embedder) -> None:
    """The hook command and MCP server that `install` registers work as Claude Code runs
    them: through a shell, with memctl not on PATH."""
    repo = make_repo("wired")
    memories(home, embedder, repo).remember("Always pin dependency versions in requirements.txt",
                                            kind="convention")
    assert cli("install", "claude", cwd=repo).code == 0
    hooks = json.loads((repo / ".claude" / "settings.json").read_text())["hooks"]
    command = hooks["SessionStart"][0]["hooks"][0]["command"]
    env = {"PATH": "/usr/bin:/bin", **HOOK_ENV}
    proc = subprocess.run(["sh", "-c", command], input=payload("SessionStart", repo).encode(),
                          capture_output=True, env=env, cwd=repo, timeout=600)
    assert proc.returncode == 0, proc.stderr
    context = json.loads(proc.stdout)["hookSpecificOutput"]["additionalContext"]
    assert "Always pin dependency versions" in context

    server = json.loads((repo / ".mcp.json").read_text())["mcpServers"]["memctl"]
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "test", "version": "0"}}}
    proc = subprocess.Popen([server["command"], *server["args"]], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env={**env, **server["env"]}, cwd="/")
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write((json.dumps(init) + "\n").encode())
        proc.stdin.flush()
        ready, _, _ = select.select([proc.stdout], [], [], 300)
        assert ready, "the registered MCP server did not answer initialize"
        reply = json.loads(proc.stdout.readline())
    finally:
        proc.kill()  # the reply is all this test needs; the server's own tests cover the rest
        proc.wait(timeout=60)
    assert reply["id"] == 1 and "memctl" in reply["result"]["serverInfo"]["name"]


# -- hooks -------------------------------------------------------------------------------------
def test_session_start_prints_the_briefing_or_nothing(cli, make_repo, home: Path,
                                                      embedder) -> None:
    repo, empty = make_repo("briefed"), make_repo("empty")
    mem = memories(home, embedder, repo)
    mem.remember("Never call the billing API from tests; use the sandbox account.",
                 kind="convention")
    mem.remember("We chose Postgres 16 over MySQL for the orders service.", kind="decision")
    r = cli("hook", "claude", input=payload("SessionStart", repo, source="startup"),
            env=HOOK_ENV)
    assert r.code == 0 and r.stderr == ""
    out = json.loads(r.stdout)["hookSpecificOutput"]
    assert out["hookEventName"] == "SessionStart"
    text = out["additionalContext"]
    assert "## conventions" in text and "Never call the billing API from tests" in text
    assert "Postgres 16" in text and len(text) <= 2000
    # Were it ever echoed into the transcript, the capture would not store it again.
    assert turn_of({"type": "user", "message": {"role": "user", "content": text}}) is None
    quiet = cli("hook", "claude", "SessionStart", input=payload("SessionStart", empty),
                env=HOOK_ENV)
    assert quiet.code == 0 and quiet.stdout == ""


def test_user_prompt_adds_relevant_memories_only(cli, make_repo, home: Path, embedder) -> None:
    repo = make_repo("prompted")
    mem = memories(home, embedder, repo)
    fix = mem.remember("parse_config crashed on empty YAML files with a TypeError; the fix "
                       "was to default to an empty dict.", kind="bug")
    mem.remember("Deploys go out on Tuesdays after the staging smoke tests pass.",
                 kind="decision")
    r = cli("hook", "claude", "UserPromptSubmit", env=HOOK_ENV, input=payload(
        "UserPromptSubmit", repo, prompt="parse_config throws a TypeError on an empty file"))
    assert r.code == 0 and r.stderr == ""
    out = json.loads(r.stdout)["hookSpecificOutput"]
    assert out["hookEventName"] == "UserPromptSubmit"
    text = out["additionalContext"]
    assert text.startswith("Memories from this project's store")
    assert f"[memory {fix.id} · bug · " in text and "> parse_config crashed" in text
    assert "Tuesdays" not in text
    assert turn_of({"type": "user", "message": {"role": "user", "content": text}}) is None
    quiet = cli("hook", "claude", "UserPromptSubmit", env=HOOK_ENV, input=payload(
        "UserPromptSubmit", repo, prompt="write a haiku about autumn leaves please"))
    assert quiet.code == 0 and quiet.stdout == ""


def test_stop_captures_once_and_redacts(cli, make_repo, home: Path, embedder,
                                        tmp_path: Path) -> None:
    repo = make_repo("captured")
    transcript = tmp_path / "session.jsonl"
    transcript.write_text(FIXTURE.read_text().replace(PLACEHOLDER, SECRET))
    assert SECRET in transcript.read_text()
    r = cli("hook", "claude", "Stop", env=HOOK_ENV,
            input=payload("Stop", repo, transcript, stop_hook_active=False))
    assert r.code == 0 and r.stdout == "" and r.stderr == ""
    wait_drained(home)
    mem = memories(home, embedder, repo)
    rows = mem.list(limit=0)
    texts = {m.kind: [] for m in rows}
    for m in rows:
        texts[m.kind].append(m.text)
        assert m.session == SESSION and m.agent == "claude-code" and "captured" in m.tags
    assert len(rows) == 4, [m.text for m in rows]
    assert any("httpx for the new async upload client" in t for t in texts["decision"])
    assert any("--timeout 30" in t for t in texts["convention"])
    assert any("root cause" in t and "requests.Session" in t for t in texts["bug"])
    leaked = [m for m in rows if "HTTP 401" in m.text]
    assert leaked and SECRET not in leaked[0].text and "github_token" in leaked[0].redactions
    assert {m.source for m in rows} == {"user", "agent"}
    for noise in ("happy to help", "Great, thanks", "Should we use", "patience", "SQLite"):
        assert not any(noise in m.text for m in rows), noise
    # The secret is nowhere under the data directory (the queue holds byte ranges, not text).
    assert not [p for p in home.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]

    # A second Stop reads nothing new; PreCompact shares the cursor; new lines are captured.
    cli("hook", "claude", "Stop", env=HOOK_ENV, input=payload("Stop", repo, transcript))
    assert "0 to capture" in log_text(home)
    with transcript.open("a") as fh:
        fh.write(json.dumps({"type": "user", "sessionId": SESSION, "message": {
            "role": "user", "content": "We decided to drop Python 3.9 support in the next "
            "release."}}) + "\n")
    r = cli("hook", "claude", "PreCompact", env=HOOK_ENV,
            input=payload("PreCompact", repo, transcript, trigger="auto"))
    assert r.code == 0 and r.stdout == ""
    wait_drained(home)
    after = mem.list(limit=0)
    assert len(after) == 5 and any("Python 3.9" in m.text for m in after)


@pytest.mark.parametrize("stdin", [
    b"this is not json", b"[1, 2, 3]", b"",
    json.dumps({"hook_event_name": "SessionStart"}).encode(),  # no cwd
    json.dumps({"hook_event_name": "Notification", "cwd": "/"}).encode(),
    json.dumps({"hook_event_name": "Stop", "cwd": "/", "session_id": "x",
                "transcript_path": "/no/such/file.jsonl"}).encode(),
])
def test_unusable_input_is_silent(cli, home: Path, stdin: bytes) -> None:
    r = cli("hook", "claude", input=stdin)
    assert (r.code, r.stdout, r.stderr) == (0, "", "")
    assert "ignored:" in log_text(home)


def test_time_budget_gives_up_silently(cli, make_repo, home: Path, embedder) -> None:
    repo = make_repo("slow")
    memories(home, embedder, repo).remember("We decided to vendor the protobuf compiler.",
                                            kind="decision")
    r = cli("hook", "claude", input=payload("SessionStart", repo),
            env={"MEMCTL_HOOK_BUDGET": "0.01"})
    assert (r.code, r.stdout) == (0, "")
    assert "gave up after" in log_text(home)


# -- the relevance bar -------------------------------------------------------------------------
PROJECT_MEMORIES = [
    ("convention", "Always run `ruff check .` before committing; the line length limit is 100."),
    ("decision", "We decided to use LanceDB as the source of truth; the Tantivy index is "
                 "derived and can be rebuilt."),
    ("bug", "test_concurrency failed intermittently because the write lock lived on NFS; fixed "
            "by moving write.lock to the local data dir."),
    ("convention", "Never mock the store in tests: use real LanceDB and Tantivy in temp dirs."),
    ("decision", "Going with FastAPI for the HTTP layer instead of Flask because of async "
                 "support."),
    ("fact", "The embedder is MiniLM-L6 quantized to Q8_0 GGUF, converted on first use."),
    ("bug", "parse_config crashed on empty YAML files with a TypeError; the fix was to default "
            "to {}."),
    ("convention", "Database migrations live in migrations/ and are named "
                   "YYYYMMDD_description.sql."),
    ("decision", "Deploys go out on Tuesdays after the staging smoke tests pass."),
    ("preference", "The user prefers short commit messages in the imperative mood."),
    ("fact", "The CI machine has 2 cores and 24 GiB of RAM, no GPU."),
    ("bug", "The login page showed a blank screen on Safari because of an unsupported regex "
            "lookbehind; replaced with a split."),
]
# (prompt, index of the memory it is about)
RELATED = [
    ("how should I lint the code before I commit?", 0),
    ("which database is the source of truth here?", 1),
    ("the concurrency test is flaky again, any idea why?", 2),
    ("can I mock the store in this unit test?", 3),
    ("should we use Flask or FastAPI for the new endpoint?", 4),
    ("parse_config throws TypeError on an empty file", 6),
    ("where do I put a new database migration and how to name it?", 7),
    ("when do we deploy to production?", 8),
    ("write a commit message for this change", 9),
    ("the login page is blank in Safari", 11),
]
UNRELATED = [
    "what is the capital of France?", "write a haiku about autumn leaves",
    "explain how quicksort works", "add a dark mode toggle to the settings page",
    "rename the variable foo to bar in utils.py", "how do I center a div with css?",
    "translate this paragraph into Spanish", "implement a binary search tree in rust",
    "what's the weather like today?", "refactor the payment module to use dependency injection",
]


def test_relevance_bar_separates_related_from_unrelated_prompts(mem: Memories) -> None:
    ids = [mem.remember(text, kind=kind).id for kind, text in PROJECT_MEMORIES]
    for prompt, about in RELATED:
        found = claude_hooks.relevant(mem, prompt)
        assert found and found[0].hit.memory.id == ids[about], prompt
        assert len(found) <= claude_hooks.MAX_INJECTED
    for prompt in UNRELATED:
        assert claude_hooks.relevant(mem, prompt) == [], prompt


def test_clears_bar_edges() -> None:
    assert claude_hooks.clears_bar(0.1, 0.55)  # a close paraphrase with no shared word
    assert claude_hooks.clears_bar(0.5, 0.31)
    assert not claude_hooks.clears_bar(0.67, 0.11)  # one common word, unrelated meaning
    assert not claude_hooks.clears_bar(0.3, 0.4)


def test_log_rotates(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMCTL_HOME", str(home))
    monkeypatch.setattr(claude_hooks, "LOG_MAX_BYTES", 200)
    for n in range(10):
        claude_hooks.log("Stop", f"line {n} " + "x" * 40)
    logs = home / "logs"
    assert (logs / "hooks.log.1").exists() and (logs / "hooks.log").stat().st_size < 400
    assert os.stat(logs).st_mode & 0o077 == 0


# -- config file mechanics ---------------------------------------------------------------------
def test_config_writes_keep_format_mode_and_symlinks(tmp_path: Path) -> None:
    from integrations import claude, jsonconfig

    real = tmp_path / "dotfiles" / "settings.json"
    real.parent.mkdir()
    original = '{\n\t"model": "opus"\n}'  # tab-indented, no final newline
    real.write_text(original)
    real.chmod(0o600)
    link = tmp_path / "settings.json"
    link.symlink_to(real)
    jsonconfig.apply([jsonconfig.plan_json(link, lambda d: claude.add_hooks(d, link))])
    assert link.is_symlink() and '\n\t"hooks": {' in real.read_text()
    assert not real.read_text().endswith("\n") and real.stat().st_mode & 0o777 == 0o600
    change = jsonconfig.plan_json(link, lambda d: claude.remove_hooks(d, link))
    assert change.action == "update" and change.after == original
    jsonconfig.apply([change])
    assert real.read_text() == original and link.is_symlink()
    # Emptied through a link: the link and its target stay, holding an empty object.
    real.write_text("{}\n")
    jsonconfig.apply([jsonconfig.plan_json(link, lambda d: claude.add_hooks(d, link))])
    jsonconfig.apply([jsonconfig.plan_json(link, lambda d: claude.remove_hooks(d, link))])
    assert link.is_symlink() and real.read_text() == "{}\n"


def test_hook_rewrite_replaces_stale_entries_in_place() -> None:
    from integrations import claude

    stale = {"type": "command", "command": "/old/venv/bin/memctl hook claude Stop"}
    theirs = {"type": "command", "command": "echo stop"}
    data = {"hooks": {"Stop": [{"hooks": [theirs, stale]}, {"hooks": [dict(stale)]}]}}
    out = claude.add_hooks(data, Path("settings.json"))
    groups = out["hooks"]["Stop"]
    assert len(groups) == 1 and groups[0]["hooks"][0] == theirs
    assert groups[0]["hooks"][1] == claude.hook_handler("Stop")
    assert claude.remove_hooks(out, Path("settings.json")) == \
        {"hooks": {"Stop": [{"hooks": [theirs]}]}}


# -- PreCompact: session summary ---------------------------------------------------------------
SAFARI_TURNS: list[tuple[str, object]] = [
    ("user", "Login on Safari shows a blank page since this morning's deploy."),
    ("assistant", [{"type": "text", "text": "Let me check the browser console."},
                   {"type": "tool_use", "id": "toolu_01Sf1", "name": "Bash",
                    "input": {"command": "npm run e2e -- --browser webkit"}}]),
    ("user", [{"type": "tool_result", "tool_use_id": "toolu_01Sf1",
               "content": "SyntaxError: Invalid regular expression: invalid group specifier "
                          "name\n1 failed"}]),
    ("assistant", [{"type": "text", "text": "The console shows a SyntaxError: the email regex "
                    "in `web/src/auth/validate.ts` uses a lookbehind, which Safari 15 does not "
                    "support."}]),
    ("user", "We decided to stop using lookbehind in regexes everywhere."),
    ("assistant", [{"type": "text", "text": "I replaced the lookbehind with a split on '@' and "
                    "added an eslint rule that rejects lookbehind in regexes. Login works on "
                    "Safari 15 again."},
                   {"type": "tool_use", "id": "toolu_01Sf2", "name": "Edit",
                    "input": {"file_path": "web/src/auth/validate.ts"}}]),
    ("user", [{"type": "tool_result", "tool_use_id": "toolu_01Sf2",
               "content": "The file web/src/auth/validate.ts has been updated."}]),
    ("user", "Thanks, that's all for now."),
]
EXPORT_TURNS: list[tuple[str, object]] = [
    ("user", "The nightly export job crashes with a KeyError on 'currency' since yesterday."),
    ("assistant", [{"type": "text", "text": "The new invoices from the Stripe import have no "
                    "currency field. I made export/invoices.py default to the account's "
                    "currency and added a test with a currency-less invoice."}]),
    ("user", "Good. Can you also log a warning when the default is used?"),
    ("assistant", [{"type": "text", "text": "Done: export/invoices.py now logs 'invoice "
                    "without currency' with the invoice id, and the nightly export passes on "
                    "yesterday's data."}]),
]


def write_transcript(path: Path, turns: list[tuple[str, object]],
                     session: str = SESSION) -> Path:
    """A Claude Code transcript of `turns`, with the metadata real lines carry."""
    lines = [{"type": "summary", "summary": "Compaction test", "leafUuid": "0" * 32}]
    parent = None
    for i, (role, content) in enumerate(turns):
        uuid = f"00000000-0000-4000-8000-{i:012d}"
        message: dict[str, object] = {"role": role, "content": content}
        if role == "assistant":
            message.update({"id": f"msg_{i:04d}", "type": "message",
                            "model": "claude-sonnet-4-20250514"})
        lines.append({"parentUuid": parent, "isSidechain": False, "userType": "external",
                      "cwd": "/home/dev/web", "sessionId": session, "version": "1.0.72",
                      "type": role, "message": message, "uuid": uuid,
                      "timestamp": f"2025-06-14T10:{i:02d}:00.000Z"})
        parent = uuid
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def generator_model(models_dir: Path) -> Path:
    """The default generator assembled into the shared models dir before `home` is seeded
    from it, so the drain finds it there instead of assembling it again."""
    from memory.llm.generator import model_path

    return model_path(None, models_dir)


@pytest.mark.parametrize("case", ["summary", "off", "no model"])
def test_precompact_summarises_the_session(generator_model: Path, cli, make_repo, home: Path,
                                           embedder, tmp_path: Path, case: str) -> None:
    repo = make_repo("compacted")
    transcript = write_transcript(tmp_path / "session.jsonl", SAFARI_TURNS)
    env = {**HOOK_ENV, "MEMCTL_SUMMARY_BUDGET": "0" if case == "off" else "600"}
    if case == "no model":
        env["MEMCTL_GENERATOR"] = str(tmp_path / "missing.gguf")
    r = cli("hook", "claude", "PreCompact", env=env,
            input=payload("PreCompact", repo, transcript, trigger="auto"))
    assert (r.code, r.stdout, r.stderr) == (0, "", "")
    wait_drained(home)
    rows = memories(home, embedder, repo).list(limit=0)
    # The heuristic capture is stored whatever happens to the summary.
    assert [m.text for m in rows if m.kind == "decision"] == \
        ["We decided to stop using lookbehind in regexes everywhere."]
    episodes = [m for m in rows if m.kind == "episode"]
    log = log_text(home)
    if case != "summary":
        assert episodes == [] and len(rows) == 1
        if case == "off":
            assert "turns to summarise" not in log
        else:
            assert "the generator cannot load" in log and "summary unavailable 1" in log
        return
    assert len(episodes) == 1, log
    summary = episodes[0]
    assert summary.text.startswith("In this session, ") and "lookbehind" in summary.text
    assert summary.source == "agent" and summary.agent == "claude-code"
    assert summary.session == SESSION and summary.status == "active"
    assert set(summary.tags) == {"captured", "claude-code", "summary"}
    assert "6 turns to summarise" in log and "summary stored 1" in log
    # A Stop on the same session never summarises; nothing new is read anyway.
    cli("hook", "claude", "Stop", env=env, input=payload("Stop", repo, transcript))
    wait_drained(home)
    assert len(memories(home, embedder, repo).list(limit=0)) == 2


def test_one_drain_reuses_the_cached_instruction(generator_model: Path, home: Path, embedder,
                                                 make_repo, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Two queued PreCompact items drained by one process: the second summary restores the
    instruction's state from the process's prefix cache."""
    monkeypatch.setenv("MEMCTL_HOME", str(home))
    monkeypatch.setenv("MEMCTL_SUMMARY_BUDGET", "600")
    for name in ("MEMCTL_PROJECT", "MEMCTL_GENERATOR"):
        monkeypatch.delenv(name, raising=False)
    repo = make_repo("drained")
    project = resolve_project(None, cwd=repo)
    spool = claude_hooks.spool_dir()
    spool.mkdir(parents=True)
    for i, (session, turns) in enumerate((("s-safari", SAFARI_TURNS),
                                          ("s-export", EXPORT_TURNS))):
        path = write_transcript(tmp_path / f"{session}.jsonl", turns, session)
        claude_hooks.write_atomic(spool / f"{i}-{session}.json", {
            "cwd": str(repo), "project": project.key, "session": session,
            "event": "PreCompact", "transcript": str(path), "start": 0,
            "end": path.stat().st_size})
    claude_hooks.summariser.cache_clear()
    try:
        claude_hooks.drain()
        model = claude_hooks.summariser()
        assert model is not None and model.cache is not None
        stats = model.cache.stats()
        assert (stats.misses, stats.hits, stats.entries) == (1, 1, 1)
        model.gen.close()
    finally:
        claude_hooks.summariser.cache_clear()
    assert not claude_hooks.spool_has_work()
    rows = memories(home, embedder, repo).list(limit=0)
    episodes = {m.session: m.text for m in rows if m.kind == "episode"}
    assert set(episodes) == {"s-safari", "s-export"}, log_text(home)
    assert "lookbehind" in episodes["s-safari"] and "export" in episodes["s-export"]
    assert "prefix cache hits so far: 1" in log_text(home)
