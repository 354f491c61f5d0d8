"""`memctl install|uninstall cursor` on real config files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from integrations.cursor import RULES

OTHER = {"mcpServers": {"postgres": {"command": "npx", "args": ["-y", "pg-mcp"],
                                     "env": {"PGHOST": "localhost"}}}}


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and ".git" not in p.relative_to(root).parts}


def front_matter(text: str) -> dict[str, str]:
    assert text.startswith("---\n")
    head = text.split("---\n")[1]
    return dict(line.split(":", 1) for line in head.strip().splitlines())


def test_install_writes_server_and_rules_and_uninstall_restores(cli, make_repo) -> None:
    repo = make_repo("web")
    mcp = repo / ".cursor" / "mcp.json"
    mcp.parent.mkdir()
    mcp.write_text(json.dumps(OTHER, indent=4) + "\n")  # 4-space indentation is kept
    before = tree(repo)

    r = cli("install", "cursor", cwd=repo)
    assert r.code == 0, r.stderr
    data = json.loads(mcp.read_text())
    assert data["mcpServers"]["postgres"] == OTHER["mcpServers"]["postgres"]
    server = data["mcpServers"]["memctl"]
    assert server["command"] == sys.executable
    assert server["args"] == ["-m", "memory", "serve", "--project", str(repo)]
    assert '\n    "mcpServers"' in mcp.read_text()
    rules = (repo / ".cursor" / "rules" / "memctl.mdc").read_text()
    meta = front_matter(rules)
    assert meta["alwaysApply"].strip() == "true" and meta["description"].strip()
    for tool in ("`briefing`", "`recall`", "`remember`", "`feedback`"):
        assert tool in rules

    installed = tree(repo)
    again = cli("install", "cursor", "--repo", str(repo))
    assert again.code == 0 and "already installed" in again.stdout
    assert tree(repo) == installed

    assert cli("uninstall", "cursor", cwd=repo).code == 0
    assert tree(repo) == before
    assert not (repo / ".cursor" / "rules").exists()


def test_fresh_install_round_trip_and_dry_run(cli, make_repo) -> None:
    repo = make_repo("api")
    r = cli("install", "cursor", "--dry-run", "--json", cwd=repo)
    assert r.code == 0, r.stderr
    changes = r.json()["changes"]
    assert [c["action"] for c in changes] == ["create", "create"]
    assert "alwaysApply: true" in changes[1]["diff"]
    assert not (repo / ".cursor").exists()
    assert cli("install", "cursor", cwd=repo).code == 0
    assert (repo / ".cursor" / "rules" / "memctl.mdc").read_text() == RULES
    assert cli("uninstall", "cursor", cwd=repo).code == 0
    assert not (repo / ".cursor").exists()


def test_refuses_invalid_json_and_foreign_rules(cli, make_repo) -> None:
    repo = make_repo("strict")
    mcp = repo / ".cursor" / "mcp.json"
    mcp.parent.mkdir()
    mcp.write_text("{'single': 'quotes'}")
    r = cli("install", "cursor", cwd=repo)
    assert r.code == 2 and "not valid JSON" in r.stderr and "Traceback" not in r.stderr
    assert mcp.read_text() == "{'single': 'quotes'}"
    assert not (repo / ".cursor" / "rules").exists()

    mcp.unlink()
    rules = repo / ".cursor" / "rules" / "memctl.mdc"
    rules.parent.mkdir()
    rules.write_text("---\nalwaysApply: true\n---\nmy own rules\n")
    r = cli("install", "cursor", cwd=repo)
    assert r.code == 2 and "not written by memctl" in r.stderr
    assert not mcp.exists()
    assert cli("uninstall", "cursor", cwd=repo).code == 0
    assert rules.read_text() == "---\nalwaysApply: true\n---\nmy own rules\n"


def test_user_scope_writes_only_the_server(cli, tmp_path: Path) -> None:
    home = tmp_path / "user-home"
    home.mkdir()
    r = cli("install", "cursor", "--scope", "user", env={"HOME": str(home)})
    assert r.code == 0, r.stderr
    data = json.loads((home / ".cursor" / "mcp.json").read_text())
    assert data["mcpServers"]["memctl"]["args"] == ["-m", "memory", "serve"]
    assert not (home / ".cursor" / "rules").exists()
    assert cli("uninstall", "cursor", "--scope", "user", env={"HOME": str(home)}).code == 0
    assert list(home.iterdir()) == []
