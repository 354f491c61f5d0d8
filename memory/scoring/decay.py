"""Retention (forgetting) of memories over time.

Retention follows an exponential forgetting curve R = exp(-age / S). The strength S (in
days) starts from a per-kind half-life and grows with use and importance, and shrinks when
the memory is poorly trusted. Decay lowers a memory's rank but never hides a strongly
relevant one: see `rank_factor`.

All functions are pure; ages are passed in, never read from a clock.
"""

from __future__ import annotations

import math

# Half-life in days per memory kind: the age at which an unused memory of average
# importance keeps half its retention.
HALF_LIFE_DAYS: dict[str, float] = {
    # Conventions outlive most decisions: "we use ruff, line length 100" holds for years.
    "convention": 540.0,
    # Architectural decisions stay relevant for many months, until superseded explicitly.
    "decision": 365.0,
    # User preferences change rarely.
    "preference": 365.0,
    # Facts about the codebase drift as the code changes.
    "fact": 180.0,
    "doc": 180.0,
    # A commit matters while its code is recent; git keeps the history anyway.
    "commit": 120.0,
    # What happened in a session: useful for a couple of months.
    "episode": 60.0,
    # Bugs get fixed; a bug note that is still needed gets accessed and so strengthened.
    "bug": 45.0,
    # Scratch notes ("test_x is flaky today") should fade within weeks.
    "note": 30.0,
}
# A kind this module does not know decays at a middling rate rather than raising.
DEFAULT_HALF_LIFE_DAYS = 90.0

DEFAULT_IMPORTANCE = 0.5
# Trust at or above this mean does not shorten strength; every source prior (>= 0.6) is
# at or above it, so only memories that drew negative feedback fade faster.
TRUST_NEUTRAL = 0.6
# Strength multiplier at zero trust: a discredited memory fades four times faster.
MIN_TRUST_FACTOR = 0.25
# Each additional recall adds less: factor 1 + ACCESS_GAIN * ln(1 + accesses).
ACCESS_GAIN = 0.5

# Smallest retention returned, so retention stays strictly positive (exp underflows).
MIN_RETENTION = 1e-12
_MIN_STRENGTH_DAYS = 1e-6

# rank_factor: the floor for an irrelevant memory, and the floor it rises to for a
# perfectly relevant one.
DEFAULT_FLOOR = 0.2
RELEVANT_FLOOR = 0.6


def _clamp01(value: float, default: float) -> float:
    if math.isnan(value):
        return default
    return min(1.0, max(0.0, value))


def half_life(kind: str) -> float:
    """Half-life in days for `kind` (case-insensitive), DEFAULT_HALF_LIFE_DAYS if unknown."""
    return HALF_LIFE_DAYS.get(kind.strip().lower(), DEFAULT_HALF_LIFE_DAYS)


def strength(
    kind: str,
    access_count: int = 0,
    importance: float = DEFAULT_IMPORTANCE,
    trust_mean: float = TRUST_NEUTRAL,
) -> float:
    """Memory strength S in days (the e-folding time of retention).

    - base: half-life / ln 2, so retention at one half-life is exactly 0.5;
    - accesses lengthen it with diminishing returns (x2 after ~6 accesses, x3 after ~54);
    - importance in [0, 1] scales it by 2 ** (2 * importance - 1): x0.5 .. x2, x1 at 0.5;
    - trust below TRUST_NEUTRAL shortens it linearly down to MIN_TRUST_FACTOR at 0.
    """
    base = half_life(kind) / math.log(2)
    accesses = max(0, access_count)
    access_factor = 1.0 + ACCESS_GAIN * math.log1p(accesses)
    importance_factor = 2.0 ** (2.0 * _clamp01(importance, DEFAULT_IMPORTANCE) - 1.0)
    trust = _clamp01(trust_mean, TRUST_NEUTRAL)
    trust_factor = MIN_TRUST_FACTOR + (1.0 - MIN_TRUST_FACTOR) * min(1.0, trust / TRUST_NEUTRAL)
    return base * access_factor * importance_factor * trust_factor


def retention(age_days: float, strength_days: float) -> float:
    """exp(-age / S), in [MIN_RETENTION, 1]. A negative (clock-skewed) age counts as 0."""
    if math.isnan(age_days) or age_days <= 0:
        return 1.0
    s = strength_days if strength_days > _MIN_STRENGTH_DAYS else _MIN_STRENGTH_DAYS
    return max(MIN_RETENTION, math.exp(-age_days / s))


def retention_for(
    kind: str,
    age_days: float,
    access_count: int = 0,
    importance: float = DEFAULT_IMPORTANCE,
    trust_mean: float = TRUST_NEUTRAL,
) -> float:
    """Retention of a memory of `kind` at `age_days`; see `strength` for the other inputs."""
    return retention(age_days, strength(kind, access_count, importance, trust_mean))


def rank_factor(retention: float, relevance: float, floor: float = DEFAULT_FLOOR) -> float:
    """Ranking multiplier in [floor, 1] from retention and relevance (both in [0, 1]).

    factor = f + (1 - f) * retention, where the floor f rises linearly with relevance from
    `floor` to max(floor, RELEVANT_FLOOR). A faded memory thus keeps at least 60% of its
    score when it matches the query perfectly, but only 20% when it barely matches.
    Non-decreasing in both retention and relevance.
    """
    r = _clamp01(retention, 0.0)
    rel = _clamp01(relevance, 0.0)
    low = _clamp01(floor, DEFAULT_FLOOR)
    high = max(low, RELEVANT_FLOOR)
    f = low + (high - low) * rel
    return f + (1.0 - f) * r
