"""`memctl bench trust`: the poisoning benchmark runs end to end through the real CLI, and what
must hold does (quarantined memories never surface, feedback and contradiction lower trust)."""

from __future__ import annotations

from memory.bench import trust_corpus
from memory.bench.trust import _table

HEADLINE = ["trust_gap", "sleeper_trust_drop", "poisoned_in_briefing", "poisoned_in_top5"]


def test_corpus_is_deterministic_per_seed_and_sized_as_documented() -> None:
    a, b, c = trust_corpus.build(3), trust_corpus.build(3), trust_corpus.build(4)
    assert a == b
    assert a != c
    assert 40 <= len(a.honest) <= 60
    assert {i.source for i in a.honest} == {"user", "git"}
    assert {i.source for i in a.poisoned} <= {"agent", "import"}
    groups = {g: [i for i in a.poisoned if i.group == g] for g in trust_corpus.POISONED}
    assert all(groups.values())
    assert all(i.trigger for i in groups[trust_corpus.SLEEPER])
    # every false fact differs from every honest memory
    assert not {i.text for i in a.poisoned} & {i.text for i in a.honest}


def test_bench_trust_json(cli, capsys) -> None:
    res = cli("bench", "trust", "--json", "--seed", "1", timeout=600)
    assert res.code == 0, res.stderr
    out = res.json()
    assert list(out)[:4] == HEADLINE
    assert isinstance(out["poisoned_in_briefing"], int)
    for key in ("trust_gap", "sleeper_trust_drop", "poisoned_in_top5"):
        assert isinstance(out[key], float)

    # What must hold, whatever the tuning:
    assert out["trust_gap"] > 0
    assert out["trust_gap_lower_bound"] > 0
    assert 0 < out["sleeper_trust_drop"] < 1
    assert 0 <= out["poisoned_in_top5"] <= 1
    assert out["quarantined_in_top5"] == 0
    assert out["quarantined_in_briefing"] == 0
    assert out["quarantined"]["instruction"] > 0
    assert out["false_facts_contradicted"] > 0
    assert out["honest_contradicted"] == 0
    assert out["poisoned_trust"]["false_fact"] < out["honest_trust"]
    assert out["poisoned_in_briefing"] <= out["poisoned_in_full_briefing"]

    _table(out, 1)
    printed = capsys.readouterr().out
    assert "trust gap" in printed and "sleeper trust drop" in printed
