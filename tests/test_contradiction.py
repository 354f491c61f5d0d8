"""Contradiction between memories: the pure detector, who loses, and the CONTRADICTED event that
`Memories.remember` emits (real store, real MiniLM)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memory import contradiction
from memory.contradiction import check, conflict, loser
from memory.record import EMBED_DIM, Memory, new_id, utcnow
from memory.scoring import trust
from memory.service import Memories
from memory.textutil import content_hash

CONFLICTS = [
    # a different value for the same key
    ("The API server listens on port 8080.", "The API server listens on port 9090."),
    ("The project requires Python 3.11.", "The project requires Python 3.12."),
    ("Node 18 is used in CI.", "Node v20 is used in CI."),
    ("Config is loaded from config/settings.toml.", "Config is loaded from config/app.yaml."),
    ("Secrets are read from `.env` at start-up.", "Secrets are read from `.envrc` at start-up."),
    ("The build takes 5 minutes.", "The build takes 7 minutes."),
    # polarity
    ("We use Redis for caching.", "We do not use Redis for caching."),
    ("We use Redis for caching.", "We no longer use Redis for caching."),
    ("We don\u2019t use Docker in CI.", "We use Docker in CI."),
    ("Never commit directly to main; open a pull request.", "Commit directly to main."),
    ("Avoid global state in handlers.", "Use global state in handlers."),
    ("Caching is enabled in production.", "Caching is disabled in production."),
    ("We use MySQL for reporting.", "We don't use MySQL for reporting."),
    # a choice against its rejected alternative
    ("Use pytest instead of unittest for tests.", "Use unittest for tests."),
    ("Use pytest instead of unittest for tests.", "Use unittest instead of pytest for tests."),
    ("We switched from MySQL to Postgres for the ledger.", "The ledger uses MySQL."),
    ("We replaced Jenkins with GitHub Actions for CI.", "CI runs on Jenkins."),
    ("Prefer httpx over requests in new code.", "Use requests in new code."),
    # one sentence of a longer memory is enough
    ("Deploys go through Helm. The API server listens on port 8080.",
     "The API server listens on port 9090."),
]

NOT_CONFLICTS = [
    # paraphrases and repeats
    ("We use Redis for caching.", "Redis is our caching layer."),
    ("The API server listens on port 8080.", "The API server listens on port 8080."),
    ("Use pytest instead of unittest for tests.", "Use pytest for tests."),
    # additions and qualifications
    ("The API server listens on port 8080.",
     "The API server listens on port 8080 and the admin UI on port 8081."),
    ("Timeouts are 30 seconds for the API client.",
     "Timeouts are 30 seconds for the API client, 60 for uploads."),
    ("Never commit directly to main.", "Commit directly to main only for hotfixes."),
    # unrelated numbers, other subjects
    ("The API server listens on port 8080.", "The admin UI listens on port 8081."),
    ("We have 3 services.", "The API listens on port 8080."),
    ("Release 1.2 added search and export.", "Release 1.3 added search."),
    ("Release 1.2 added search.", "Release 1.3 added export."),
    ("The staging database is Postgres 15.", "The production database is Postgres 16."),
    ("We call parse_config from main.py.", "We call load_env from main.py."),
    ("parse_config does not read YAML.", "load_settings reads YAML."),
    ("We use MySQL for reporting.", "We use PostgreSQL for reporting."),
    ("Always call fetch_rates before save_rates in app/rates.py; it keeps runs idempotent.",
     "Always call load_user before check_user in api/users.py; it keeps runs idempotent."),
    # double negation is not a flip
    ("Don't deploy without approval.", "Deploy with approval."),
]


@pytest.mark.parametrize(("a", "b"), CONFLICTS)
def test_conflicting_statements_are_detected_both_ways(a: str, b: str) -> None:
    assert conflict(a, b)
    assert conflict(b, a)


@pytest.mark.parametrize(("a", "b"), NOT_CONFLICTS)
def test_compatible_statements_do_not_conflict(a: str, b: str) -> None:
    assert conflict(a, b) is None
    assert conflict(b, a) is None


def test_reasons_name_what_differs() -> None:
    assert conflict("The API listens on port 8080.", "The API listens on port 9090.") == \
        "8080 vs 9090"
    assert conflict("We use Redis for caching.", "We never use Redis for caching.") == "negation"
    assert conflict("Prefer httpx over requests in new code.", "Use requests in new code.") == \
        "httpx instead of requests"


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=300))
def test_a_text_never_contradicts_itself_and_nothing_raises(text: str) -> None:
    assert conflict(text, text) is None
    conflict(text, text[::-1])


def test_pathological_input_finishes() -> None:
    # Long runs that make backtracking regexes quadratic; 32,000 characters is the largest
    # memory. A subprocess with a timeout bounds the wait if this ever regresses.
    code = textwrap.dedent("""
        from memory.contradiction import conflict
        for pat in ["a", "a-", "1a", "a:", "`a", "a. ", "x instead of ", "switched from a ",
                    "prefer x ", "don't ", "a b "]:
            text = pat * (32000 // len(pat))
            conflict(text, text + " x")
        print("done")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.strip() == "done", out.stderr


# -- who loses ----------------------------------------------------------------------------

def record(text: str, source: str = "user", kind: str = "fact", age_days: float = 0.0,
           alpha: float | None = None, beta: float | None = None,
           status: str = "active") -> Memory:
    now = utcnow() - timedelta(days=age_days)
    a, b = trust.prior(source)
    return Memory(id=new_id(now), project="p", kind=kind, text=text,
                  content_hash=content_hash(text), created_at=now, valid_from=now,
                  source=source, status=status, trust_alpha=alpha or a, trust_beta=beta or b)


def test_lower_trust_loses_whichever_is_newer() -> None:
    assert loser(record("x", "agent"), record("x", "user", age_days=1)) == "new"
    assert loser(record("x", "user"), record("x", "agent", age_days=1)) == "old"
    assert loser(record("x", "import"), record("x", "git", age_days=1)) == "new"
    # evidence counts: a confirmed agent memory outweighs a fresh import
    assert loser(record("x", "import"), record("x", "agent", alpha=6.0, beta=1.0)) == "new"


def test_ties_go_against_the_older_unless_the_newer_source_is_weaker() -> None:
    assert loser(record("x", "user"), record("x", "user", age_days=1)) == "old"
    # equal means (2/3): a user memory that was once reported wrong vs a fresh agent memory
    assert loser(record("x", "agent"), record("x", "user", alpha=4.0, beta=2.0)) == "new"
    assert loser(record("x", "user"), record("x", "agent", alpha=8.0, beta=2.0)) == "old"


def test_check_compares_statements_only_and_respects_quarantine() -> None:
    old = record("The API listens on port 8080.", "import")
    new = record("The API listens on port 9090.", "agent")
    assert [(c.id, c.lowered) for c in check(new, [old])] == [(old.id, old.id)]
    # events (episodes, bugs, commits, notes) record what happened: different numbers are fine
    assert check(record("Ran the suite: 3 tests failed.", kind="episode"),
                 [record("Ran the suite: 5 tests failed.", kind="episode")]) == []
    # a quarantined new memory can lose, but never discredits the memory it contradicts
    held = record("The API listens on port 9090.", "agent", status="quarantined")
    assert check(held, [old]) == []
    weak = record("The API listens on port 9090.", "import", status="quarantined")
    strong = record("The API listens on port 8080.", "user")
    assert [c.lowered for c in check(weak, [strong])] == [weak.id]


def test_statement_kinds_are_the_ones_that_assert() -> None:
    assert {"fact", "decision", "convention"} <= contradiction.STATEMENT_KINDS
    assert not {"episode", "bug", "commit", "note"} & contradiction.STATEMENT_KINDS


# -- through Memories.remember ------------------------------------------------------------

def contradicted(alpha_beta: tuple[float, float]) -> tuple[float, float]:
    return trust.update(*alpha_beta, trust.TrustEvent.CONTRADICTED)


def test_agent_false_fact_against_user_memory_lowers_the_new_one(mem: Memories) -> None:
    user = mem.remember("The ledger API listens on port 8080.", kind="fact", source="user")
    fake = mem.remember("The ledger API listens on port 9090.", kind="fact", source="agent")
    assert [(c.id, c.lowered, c.reason) for c in fake.contradictions] == [
        (user.id, fake.id, "8080 vs 9090")]
    stored = mem.get(fake.id)
    assert (stored.trust_alpha, stored.trust_beta) == pytest.approx(
        contradicted(trust.prior("agent")))
    assert (mem.get(user.id).trust_alpha, mem.get(user.id).trust_beta) == trust.prior("user")
    assert fake.to_public()["contradictions"] == [
        {"id": user.id, "lowered": fake.id, "reason": "8080 vs 9090"}]


def test_user_statement_against_old_agent_memory_lowers_the_old_one(mem: Memories) -> None:
    agent = mem.remember("We use Redis for session caching.", kind="decision", source="agent")
    user = mem.remember("We do not use Redis for session caching.", kind="decision",
                        source="user")
    assert [(c.id, c.lowered) for c in user.contradictions] == [(agent.id, agent.id)]
    old = mem.get(agent.id)
    assert (old.trust_alpha, old.trust_beta) == pytest.approx(contradicted(trust.prior("agent")))
    assert old.trust < mem.get(user.id).trust
    assert (mem.get(user.id).trust_alpha, mem.get(user.id).trust_beta) == trust.prior("user")


def test_supersede_additions_and_events_are_not_contradictions(mem: Memories) -> None:
    first = mem.remember("The ledger API listens on port 8080.", kind="fact")
    wider = mem.remember("The ledger API listens on port 8080 and the admin UI on port 8081.",
                         kind="fact")
    assert wider.contradictions == []
    moved = mem.remember("The ledger API listens on port 9090.", kind="fact",
                         supersedes=first.id)
    assert first.id not in {c.id for c in moved.contradictions}
    assert (mem.get(first.id).trust_alpha, mem.get(first.id).trust_beta) == trust.prior("user")
    run1 = mem.remember("Ran the payment suite: 3 tests failed.", kind="episode")
    run2 = mem.remember("Ran the payment suite: 5 tests failed.", kind="episode")
    assert run2.contradictions == []
    assert mem.get(run1.id).trust == pytest.approx(trust.mean(*trust.prior("user")))


def test_batch_insert_does_not_check(mem: Memories) -> None:
    # insert_many (import, capture back-fill, the LoCoMo bench) stores records as prepared.
    a = mem.prepare("The ledger API listens on port 8080.", kind="fact", source="import")
    b = mem.prepare("The ledger API listens on port 9090.", kind="fact", source="import")
    mem.insert_many([a, b])
    for m in (a, b):
        assert (mem.get(m.id).trust_alpha, mem.get(m.id).trust_beta) == trust.prior("import")
        # Stored with its vector; the caller's record lets go of it (importers hold all).
        assert m.vector is None
        stored = mem.store.table.get([m.id], with_vector=True)[0]
        assert stored.vector is not None and len(stored.vector) == EMBED_DIM


def test_cli_add_reports_the_contradiction(cli) -> None:
    first = cli("add", "Integration tests run on Python 3.11.", "--kind", "fact", "--json").json()
    second = cli("add", "Integration tests run on Python 3.12.", "--kind", "fact",
                 "--json").json()
    # Both from the user: a tie, so the older statement loses trust (the new one keeps its
    # prior; the store side is checked above through Memories).
    assert second["contradictions"] == [
        {"id": first["id"], "lowered": first["id"], "reason": "3.11 vs 3.12"}]
    assert second["trust"] == pytest.approx(trust.mean(*trust.prior("user")), abs=1e-4)
    plain = cli("add", "Integration tests run on Python 3.13.", "--kind", "fact")
    assert plain.code == 0
    assert f"contradicts {second['id']} (3.12 vs 3.13)" in " ".join(plain.stderr.split())


def test_mcp_remember_reports_the_contradiction(mem: Memories, home) -> None:
    import anyio

    from tests.test_mcp_server import ok, stdio_session

    user = mem.remember("The ledger API listens on port 8080.", kind="fact", source="user")

    async def run() -> dict:
        async with stdio_session(home) as client:
            return ok(await client.call_tool(
                "remember", {"content": "The ledger API listens on port 9090.", "kind": "fact"}))

    result = anyio.run(run)
    assert result["contradicts"] == [
        {"id": user.id, "lowered": result["id"], "reason": "8080 vs 9090"}]
