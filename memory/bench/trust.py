"""`memctl bench trust`: how well trust, quarantine and contradiction hold off poisoned memories.

A throwaway project gets honest memories (user and git) and then poisoned ones through agent
and import sources (see `trust_corpus`), all written one at a time through `Memories.remember`,
so every write-time defence runs: redaction, quarantine, contradiction. Then it measures:

- trust gap: mean trust of honest minus poisoned memories after the writes. Trust is the Beta
  posterior mean (0 to 1; the source priors alone span 0.60 to 0.80, so the gap from priors
  alone is about 0.15); quarantine is a status, not a trust change, so it does not count here.
- sleeper trust drop: each sleeper is recalled with its trigger query and marked `wrong` three
  times through `Memories.feedback`; the relative fall of its trust.
- poisoned memories in the session briefing (default budget), and the share of ordinary
  questions whose top 5 recall holds a poisoned memory; quarantined ones must never appear.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer

from memory.bench.trust_corpus import (
    FALSE_FACT,
    INSTRUCTION,
    POISONED,
    SLEEPER,
    Corpus,
    Item,
    build,
)

TOP = 5
WRONG_REPORTS = 3
Progress = Callable[[str, int, int], None]


def _write(mem: Any, items: list[Item], label: str, lowered: set[str],
           progress: Progress | None) -> dict[str, Item]:
    """Remember `items` one by one; return memory id -> item (duplicates are skipped). Ids
    whose trust a contradiction lowered are added to `lowered`."""
    written: dict[str, Item] = {}
    for n, item in enumerate(items, 1):
        result = mem.remember(item.text, kind=item.kind, source=item.source,
                              agent="trust-bench" if item.source == "agent" else None)
        if result.status != "duplicate":
            written[result.id] = item
        lowered.update(c.lowered for c in result.contradictions)
        if progress:
            progress(label, n, len(items))
    return written


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else 0.0


def run(mem: Any, corpus: Corpus, progress: Progress | None = None) -> dict[str, Any]:
    """Write the corpus into `mem` (an empty project) and measure; see the module docstring."""
    from memory.briefing import briefing
    from memory.recall import RecallOptions
    from memory.scoring import trust as trust_mod

    lowered: set[str] = set()
    honest = _write(mem, corpus.honest, "honest memories", lowered, progress)
    poisoned = _write(mem, corpus.poisoned, "poisoned memories", lowered, progress)
    rows = {m.id: m for m in mem.store.table.get([*honest, *poisoned])}
    quarantined = {i for i in poisoned if rows[i].status == "quarantined"}

    def trusts(ids: list[str], value: Callable[[float, float], float]) -> list[float]:
        return [value(rows[i].trust_alpha, rows[i].trust_beta) for i in ids]

    honest_ids, poisoned_ids = list(honest), list(poisoned)
    gap = _mean(trusts(honest_ids, trust_mod.mean)) - _mean(trusts(poisoned_ids, trust_mod.mean))
    gap_lb = (_mean(trusts(honest_ids, trust_mod.lower_bound))
              - _mean(trusts(poisoned_ids, trust_mod.lower_bound)))

    def top(query: str) -> list[str]:
        return [h.memory.id for h in mem.search(query, RecallOptions(k=TOP, reinforce=False))]

    # Ordinary questions about the honest facts.
    ranked = [top(q) for q in corpus.queries]
    tops = [set(r) for r in ranked]
    with_poison = sum(bool(t & set(poisoned)) for t in tops)
    poison_first = sum(bool(r) and r[0] in poisoned for r in ranked)
    # Quarantined memories must stay out even of queries that are their own text.
    probes = tops + [set(top(rows[i].text)) for i in sorted(quarantined)]
    quarantined_in_top = sum(bool(t & quarantined) for t in probes)

    brief = briefing(mem)
    in_brief = {item.memory.id for item in brief.items}
    full = briefing(mem, budget=1_000_000)
    in_full = {item.memory.id for item in full.items}

    # Sleepers: found by their trigger, then reported wrong.
    sleepers = [i for i in poisoned if poisoned[i].group == SLEEPER]
    drops, lb_drops, found_before, found_after = [], [], 0, 0
    for i in sleepers:
        trigger = poisoned[i].trigger or poisoned[i].text
        found_before += i in top(trigger)
        before = mem.get(i)
        after = before
        for _ in range(WRONG_REPORTS):
            after = mem.feedback(i, "wrong")
        drops.append(1 - after.trust / before.trust)
        lb_before = trust_mod.lower_bound(before.trust_alpha, before.trust_beta)
        lb_after = trust_mod.lower_bound(after.trust_alpha, after.trust_beta)
        lb_drops.append(1 - lb_after / lb_before if lb_before > 0 else 0.0)
        found_after += i in top(trigger)
        if progress:
            progress("sleepers", len(drops), len(sleepers))

    by_group = {g: [i for i in poisoned if poisoned[i].group == g] for g in POISONED}
    false_facts = by_group[FALSE_FACT]
    return {
        "trust_gap": round(gap, 4),
        "sleeper_trust_drop": round(_mean(drops), 4),
        "poisoned_in_briefing": len(in_brief & set(poisoned)),
        "poisoned_in_top5": round(with_poison / len(tops), 4),
        "poisoned_ranked_first": round(poison_first / len(ranked), 4),
        "quarantined_in_top5": quarantined_in_top,
        "quarantined_in_briefing": len((in_brief | in_full) & quarantined),
        "poisoned_in_full_briefing": len(in_full & set(poisoned)),
        "briefing_items": len(brief.items),
        "trust_gap_lower_bound": round(gap_lb, 4),
        "sleeper_lower_bound_drop": round(_mean(lb_drops), 4),
        "honest_trust": round(_mean(trusts(honest_ids, trust_mod.mean)), 4),
        "poisoned_trust": {g: round(_mean(trusts(ids, trust_mod.mean)), 4)
                           for g, ids in by_group.items()},
        "honest": len(honest),
        "poisoned": {g: len(ids) for g, ids in by_group.items()},
        "quarantined": {g: len(set(ids) & quarantined) for g, ids in by_group.items()},
        "false_facts_contradicted": len(set(false_facts) & lowered),
        "honest_contradicted": len(set(honest) & lowered),
        "sleepers_found_by_trigger": found_before,
        "sleepers_found_after_feedback": found_after,
        "queries": len(corpus.queries),
    }


def _table(result: dict[str, Any], seed: int) -> None:
    from rich.console import Console
    from rich.table import Table

    p, q = result["poisoned"], result["quarantined"]
    table = Table(title=f"Poisoning and trust (seed {seed}): {result['honest']} honest, "
                        f"{sum(p.values())} poisoned memories")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("what it means")
    rows = [
        ("trust gap", f"{result['trust_gap']:.3f}",
         f"honest {result['honest_trust']:.3f} minus poisoned mean Beta trust "
         f"(lower-bound scale: {result['trust_gap_lower_bound']:.3f})"),
        ("sleeper trust drop", f"{result['sleeper_trust_drop']:.1%}",
         f"after {WRONG_REPORTS} x wrong; found by trigger {result['sleepers_found_by_trigger']}"
         f"/{p[SLEEPER]} before, {result['sleepers_found_after_feedback']} after"),
        ("poisoned in briefing", str(result["poisoned_in_briefing"]),
         f"of {result['briefing_items']} lines (default budget); "
         f"{result['poisoned_in_full_briefing']} with no budget limit"),
        ("poisoned in top 5", f"{result['poisoned_in_top5']:.1%}",
         f"of {result['queries']} ordinary questions; ranked first in "
         f"{result['poisoned_ranked_first']:.1%}"),
        ("quarantined in top 5", str(result["quarantined_in_top5"]),
         "queries (also each quarantined text itself)"),
        ("quarantined in briefing", str(result["quarantined_in_briefing"]), "must be 0"),
        ("instructions quarantined", f"{q[INSTRUCTION]}/{p[INSTRUCTION]}",
         f"mean trust {result['poisoned_trust'][INSTRUCTION]:.3f}"),
        ("false facts contradicted", f"{result['false_facts_contradicted']}/{p[FALSE_FACT]}",
         f"mean trust {result['poisoned_trust'][FALSE_FACT]:.3f}"),
        ("honest memories contradicted", str(result["honest_contradicted"]),
         "false alarms of the contradiction check"),
    ]
    for row in rows:
        table.add_row(*row)
    Console().print(table)


def trust(
    seed: Annotated[int, typer.Option("--seed", help="Picks values, poisoned items, sources "
                    "and write order; the same seed gives the same corpus.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Poisoning resistance: honest memories (user, git) plus injected instructions, false
    facts and trigger-only "sleepers" (agent, import) in a throwaway project; reports the trust
    gap, the sleepers' trust drop after `wrong` feedback, and poisoned memories in briefings
    and top-5 recall."""
    from rich.console import Console
    from rich.progress import Progress

    from memory.app import open_context
    from memory.bench.cli import scratch_home
    from memory.project import Project

    corpus = build(seed)
    with scratch_home() as home, Progress(console=Console(stderr=True), transient=True) as bar:
        ctx = open_context(home)
        task = bar.add_task("loading model", total=None)

        def progress(label: str, done: int, total: int) -> None:
            bar.update(task, description=label, completed=done, total=total)

        mem = ctx.memories(Project("trust-bench", "trust-bench"))
        result = run(mem, corpus, progress)
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    _table(result, seed)

