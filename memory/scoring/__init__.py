"""Scoring for recall: Bayesian trust, retention decay and rank fusion (all pure functions)."""

from memory.scoring.decay import (
    HALF_LIFE_DAYS,
    rank_factor,
    retention,
    retention_for,
    strength,
)
from memory.scoring.fusion import (
    DEFAULT_WEIGHTS,
    Explanation,
    FusedScore,
    explain,
    final_score,
    max_score,
    normalised,
    rrf,
)
from memory.scoring.trust import (
    PRIORS,
    TrustEvent,
    looks_like_injection,
    lower_bound,
    mean,
    prior,
    should_quarantine,
    update,
    weight,
)

__all__ = [
    "DEFAULT_WEIGHTS",
    "HALF_LIFE_DAYS",
    "PRIORS",
    "Explanation",
    "FusedScore",
    "TrustEvent",
    "explain",
    "final_score",
    "looks_like_injection",
    "lower_bound",
    "max_score",
    "mean",
    "normalised",
    "prior",
    "rank_factor",
    "retention",
    "retention_for",
    "rrf",
    "should_quarantine",
    "strength",
    "update",
    "weight",
]
