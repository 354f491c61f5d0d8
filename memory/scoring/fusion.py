"""Fusing retrieval channels into one ranking, and combining relevance with trust and decay.

Each channel (semantic, lexical, entity, temporal, context) returns ids best first.
Weighted reciprocal-rank fusion (RRF) sums weight / (k + rank) over the channels that
returned an id: it needs no score calibration between channels, which is why it is used
over raw-score blending. The per-channel parts are kept so a hit can explain its rank.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

# Channel weights. Placeholders until tuned on recall evaluations: the two content
# channels lead; entity/graph links are strong but sparser; context-file matches and time
# are supporting signals.
# Tuned on the LoCoMo dev split (`memctl bench locomo`): BM25 over stemmed verbatim text is
# the stronger channel; MiniLM vectors add recall at a lower weight. The optimum is flat
# (weights 0.4-0.8, k 3-8 all within a point of each other), so these are not noise-fitted.
DEFAULT_WEIGHTS: dict[str, float] = {
    "semantic": 0.6,
    "lexical": 1.0,
    "entity": 0.8,
    "context": 0.6,
    "temporal": 0.5,
}
# Weight of a channel missing from the weights mapping in use.
DEFAULT_CHANNEL_WEIGHT = 1.0
# RRF constant. The usual 60 flattens ranks so much that a weak channel's top hits drown a
# strong channel's; 5 keeps the first ranks decisive (measured: +6 points turn R@5).
DEFAULT_K = 5
# How far decay may lower a score (at most 30%), and how strongly trust scales it: relevance
# stays the first criterion, trust and retention order what is about equally relevant.
DECAY_WEIGHT = 0.3
TRUST_EXPONENT = 0.5


@dataclass(frozen=True, slots=True)
class FusedScore:
    """RRF score of one id, with the rank and contribution from each channel that had it."""

    score: float
    ranks: dict[str, int] = field(default_factory=dict)  # 1-based, per channel
    contributions: dict[str, float] = field(default_factory=dict)

    @property
    def best_rank(self) -> int:
        """Best (smallest) rank over the channels; 0 when no channel returned the id."""
        return min(self.ranks.values(), default=0)


def _weights_for(channels: Iterable[str], weights: Mapping[str, float] | None) -> dict[str, float]:
    table = DEFAULT_WEIGHTS if weights is None else weights
    resolved = {name: float(table.get(name, DEFAULT_CHANNEL_WEIGHT)) for name in channels}
    for name, w in resolved.items():
        if not w >= 0.0:  # also rejects NaN
            raise ValueError(f"channel weight must be >= 0, got {name}={w}")
    return resolved


@dataclass(frozen=True, slots=True)
class Fused:
    """Weighted RRF in flat form: a score per id and a rank map per channel. Recall fuses
    hundreds of candidates and explains ten, so per-id parts are built only when asked."""

    scores: dict[str, float]  # unordered
    ranks: dict[str, dict[str, int]]  # channel (sorted) -> id -> 1-based rank
    weights: dict[str, float]
    k: int

    def ranks_of(self, doc_id: str) -> dict[str, int]:
        return {ch: r[doc_id] for ch, r in self.ranks.items() if doc_id in r}

    def best_rank(self, doc_id: str) -> int:
        return min(self.ranks_of(doc_id).values(), default=0)

    def explained(self, doc_id: str) -> FusedScore:
        ranks = self.ranks_of(doc_id)
        parts = {ch: self.weights[ch] / (self.k + r) for ch, r in ranks.items()}
        return FusedScore(self.scores[doc_id], ranks, parts)


def rrf_flat(
    rankings: Mapping[str, Sequence[str]],
    weights: Mapping[str, float] | None = None,
    k: int = DEFAULT_K,
    then: Fused | None = None,
) -> Fused:
    """The scores of `rrf`, unordered, with per-channel ranks.

    With `then`, an earlier fusion of other channels (recall fuses the text channels while
    the query embedding finishes), the result is that of fusing all the channels at once,
    to the last bit: every new channel must sort after the channels of `then`."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    # Sorted channel order makes the floating-point sums independent of mapping order.
    channels = sorted(rankings)
    channel_weights = _weights_for(channels, weights)
    scores: dict[str, float] = {}
    ranks: dict[str, dict[str, int]] = {}
    if then is not None:
        if then.k != k:
            raise ValueError(f"cannot extend a fusion with k={then.k} using k={k}")
        if channels and then.ranks and channels[0] <= max(then.ranks):
            raise ValueError(f"channels {channels} do not all sort after {sorted(then.ranks)}")
        scores.update(then.scores)
        ranks.update(then.ranks)
        channel_weights = {**then.weights, **channel_weights}
    get = scores.get
    for channel in channels:
        weight = channel_weights[channel]
        # dict.fromkeys: an id's first occurrence only, in order.
        ranked = ranks[channel] = {d: r for r, d in enumerate(dict.fromkeys(rankings[channel]),
                                                               start=1)}
        for doc_id, rank in ranked.items():
            scores[doc_id] = get(doc_id, 0.0) + weight / (k + rank)
    return Fused(scores, ranks, channel_weights, k)


def rrf(
    rankings: Mapping[str, Sequence[str]],
    weights: Mapping[str, float] | None = None,
    k: int = DEFAULT_K,
) -> dict[str, FusedScore]:
    """Weighted reciprocal-rank fusion.

    `rankings` maps channel name -> ids best first; an id repeated within a channel counts
    once, at its best position. `weights` defaults to DEFAULT_WEIGHTS; a channel it does
    not name gets DEFAULT_CHANNEL_WEIGHT. The result is ordered by score descending, ties
    broken by best rank, then by id, so equal inputs always give the same order.
    """
    fused = rrf_flat(rankings, weights, k)
    order = sorted(fused.scores, key=lambda d: (-fused.scores[d], fused.best_rank(d), d))
    return {d: fused.explained(d) for d in order}


def max_score(
    channels: Iterable[str], weights: Mapping[str, float] | None = None, k: int = DEFAULT_K
) -> float:
    """Highest RRF score possible over `channels` (rank 1 everywhere).

    Dividing a fused score by this gives a relevance in [0, 1] that is comparable across
    queries, as `rank_factor` expects.
    """
    return sum(_weights_for(sorted(set(channels)), weights).values()) / (k + 1)


def normalised(score: FusedScore | float, maximum: float) -> float:
    """A fused score as a fraction of `maximum`, clamped to [0, 1] (0 if maximum <= 0)."""
    value = score.score if isinstance(score, FusedScore) else score
    return normalised_all({"": value}, maximum)[""]


def normalised_all(scores: Mapping[str, float], maximum: float) -> dict[str, float]:
    """`normalised` of every score, in one array operation (recall fuses hundreds)."""
    if maximum <= 0.0:
        return dict.fromkeys(scores, 0.0)
    values = np.fromiter(scores.values(), np.float64, len(scores))
    return dict(zip(scores, np.clip(values / maximum, 0.0, 1.0).tolist(), strict=True))


def smooth(
    ranked: Sequence[tuple[str, float]],
    neighbours: Mapping[str, Sequence[str]],
    share: float,
) -> list[tuple[str, float]]:
    """Give each id's neighbours (adjacent memories of the same session) `share` of its
    channel score, added to their own. A reply ("yes, it was great!") inherits the words of
    the question it answers. Returns ids best first."""
    scores = dict(ranked)
    out = dict(scores)
    for doc_id, score in ranked:
        for nb in neighbours.get(doc_id, ()):
            out[nb] = max(out.get(nb, 0.0), scores.get(nb, 0.0) + share * score)
    return sorted(out.items(), key=lambda kv: (-kv[1], kv[0]))


def gentle(trust_weight: float, rank_factor: float) -> float:
    """The multiplier applied to relevance: trust^0.5 x (1 - 0.3 x (1 - rank_factor))."""
    return trust_weight**TRUST_EXPONENT * (1.0 - DECAY_WEIGHT * (1.0 - rank_factor))


def final_score(relevance: float, trust_weight: float, rank_factor: float) -> float:
    """Relevance scaled by trust and decay, gently (see `gentle`): monotonic in each part."""
    return relevance * gentle(trust_weight, rank_factor)


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why a hit ranked where it did: every factor of its final score."""

    relevance: float  # fused score, as used in final_score
    trust_weight: float
    rank_factor: float
    ranks: dict[str, int] = field(default_factory=dict)
    contributions: dict[str, float] = field(default_factory=dict)

    @property
    def score(self) -> float:
        return final_score(self.relevance, self.trust_weight, self.rank_factor)

    def describe(self) -> str:
        """One line such as 'score 0.0300 = rel 0.0250 x trust 1.20 x decay 1.00 [lexical#1]'."""
        channels = " ".join(f"{ch}#{r}" for ch, r in sorted(self.ranks.items()))
        return (
            f"score {self.score:.4f} = rel {self.relevance:.4f} x trust {self.trust_weight:.2f}"
            f" x decay {self.rank_factor:.2f} [{channels}]"
        )


def explain(fused: FusedScore, trust_weight: float, rank_factor: float) -> Explanation:
    """Bundle a fused score with its trust and decay factors."""
    return Explanation(
        relevance=fused.score,
        trust_weight=trust_weight,
        rank_factor=rank_factor,
        ranks=dict(fused.ranks),
        contributions=dict(fused.contributions),
    )
