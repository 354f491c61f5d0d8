"""Bayesian trust for memories, plus a quarantine check for prompt-injection-looking text.

Every memory carries a Beta(alpha, beta) belief that it is correct and useful. alpha counts
(pseudo-)evidence for it, beta evidence against. The prior depends on where the memory came
from; feedback events move the belief; ranking uses a conservative estimate so that a memory
with little evidence is not ranked as if it were proven.

All functions are pure.
"""

from __future__ import annotations

import math
import re
import unicodedata
from enum import StrEnum

# Beta priors by source. Ordering of the prior means is the point:
#   user (0.80)  — the user's own words are the strongest statement of intent.
#   git, watch (0.75) — verifiable artefacts (commits, files on disk), but they record
#                       what happened, not necessarily what is wanted.
#   agent (0.667) — an agent's inference can be wrong.
#   import (0.60) — text from elsewhere; unknown provenance, least trusted.
# The pseudo-counts are small (total 2.5-5) so a few feedback events dominate the prior.
PRIORS: dict[str, tuple[float, float]] = {
    "user": (4.0, 1.0),
    "git": (3.0, 1.0),
    "watch": (3.0, 1.0),
    "agent": (2.0, 1.0),
    "import": (1.5, 1.0),
}
# An unrecognised source gets the least-trusted prior rather than an error: trust is
# earned, so being conservative about unknown provenance is the safe default.
UNKNOWN_SOURCE_PRIOR: tuple[float, float] = PRIORS["import"]

# Cap on total evidence alpha + beta. Past the cap both parameters are scaled down by the
# same factor: the mean is kept but old evidence is gradually forgotten, so a long-trusted
# memory can still fall after a few "wrong" reports and a discredited one can recover.
# (Capping each parameter separately would freeze the mean once both hit the cap.)
MAX_EVIDENCE = 50.0

# z for the ranking lower bound: one standard deviation below the mean.
RANKING_Z = 1.0
# Bounds of the ranking multiplier returned by `weight`.
WEIGHT_MIN = 0.5
WEIGHT_MAX = 1.5


class TrustEvent(StrEnum):
    """Feedback that moves a memory's trust."""

    HELPFUL = "helpful"  # the caller said the memory helped
    WRONG = "wrong"  # the memory is incorrect
    OUTDATED = "outdated"  # it was true once; the caller also marks it invalid
    USED = "used"  # a recall hit the caller confirmed it used
    CONTRADICTED = "contradicted"  # a newer, higher-trust memory contradicts it


# (delta alpha, delta beta) per event. Negative evidence weighs more than positive: one
# confirmed error should outweigh several mild signals of usefulness. "outdated" is milder
# than "wrong" because the memory was correct when written and is invalidated separately.
EVENT_DELTAS: dict[TrustEvent, tuple[float, float]] = {
    TrustEvent.HELPFUL: (1.0, 0.0),
    TrustEvent.USED: (0.5, 0.0),
    TrustEvent.WRONG: (0.0, 3.0),
    TrustEvent.OUTDATED: (0.0, 1.5),
    TrustEvent.CONTRADICTED: (0.0, 3.0),
}


def _check_params(alpha: float, beta: float) -> None:
    if not (math.isfinite(alpha) and math.isfinite(beta) and alpha > 0 and beta > 0):
        raise ValueError(f"Beta parameters must be finite and positive, got ({alpha}, {beta})")


def prior(source: str) -> tuple[float, float]:
    """The Beta(alpha, beta) prior for a memory from `source` (case-insensitive)."""
    return PRIORS.get(source.strip().lower(), UNKNOWN_SOURCE_PRIOR)


def update(
    alpha: float, beta: float, event: TrustEvent | str, weight: float = 1.0
) -> tuple[float, float]:
    """Apply one feedback event, scaled by `weight` (>= 0), and return the new (alpha, beta).

    Raises ValueError for an unknown event, a negative or non-finite weight, or invalid
    parameters.
    """
    _check_params(alpha, beta)
    if not (math.isfinite(weight) and weight >= 0):
        raise ValueError(f"weight must be finite and >= 0, got {weight}")
    d_alpha, d_beta = EVENT_DELTAS[TrustEvent(event)]
    alpha += weight * d_alpha
    beta += weight * d_beta
    total = alpha + beta
    if total > MAX_EVIDENCE:
        scale = MAX_EVIDENCE / total
        alpha, beta = alpha * scale, beta * scale
    return alpha, beta


def mean(alpha: float, beta: float) -> float:
    """Posterior mean: the expected probability that the memory is right."""
    _check_params(alpha, beta)
    return alpha / (alpha + beta)


def std(alpha: float, beta: float) -> float:
    """Standard deviation of Beta(alpha, beta): how unsure the trust estimate is."""
    _check_params(alpha, beta)
    n = alpha + beta
    return math.sqrt(alpha * beta / (n * n * (n + 1.0)))


def lower_bound(alpha: float, beta: float, z: float = RANKING_Z) -> float:
    """Conservative trust: mean minus `z` standard deviations, clamped to [0, 1].

    Little evidence means a wide distribution and so a lower bound well under the mean;
    this keeps a barely-tested memory from outranking a well-confirmed one.
    """
    return min(1.0, max(0.0, mean(alpha, beta) - z * std(alpha, beta)))


def weight(alpha: float, beta: float) -> float:
    """Ranking multiplier in [WEIGHT_MIN, WEIGHT_MAX], increasing with trust.

    Linear in the lower bound, which (with the clamp at 0) is non-decreasing in alpha and
    non-increasing in beta. Fresh priors land near 1: user ~1.14, agent ~0.93, import ~0.84.
    """
    return WEIGHT_MIN + (WEIGHT_MAX - WEIGHT_MIN) * lower_bound(alpha, beta)


# --- Quarantine -------------------------------------------------------------------------
#
# A memory is later pasted into an agent's context, so text that reads as instructions to
# the agent is a prompt-injection vector. Patterns are deliberately narrow (high precision):
# engineering notes are full of "always", "ignore", "run" and "system", so each pattern
# needs a combination that ordinary project text does not produce.

_FLAGS = re.IGNORECASE | re.MULTILINE

_INSTRUCTION_NOUN = r"(?:instructions?|prompts?|directives?|guidelines|programming|guardrails)"

INJECTION_PATTERNS: dict[str, re.Pattern[str]] = {
    # "ignore all previous instructions", "disregard your prior prompt"
    "ignore_previous_instructions": re.compile(
        r"\b(?:ignore|disregard|forget|override)\s+(?:all\s+|any\s+)?(?:of\s+)?"
        r"(?:the\s+|your\s+|my\s+|these\s+|those\s+)?"
        r"(?:(?:previous|prior|above|earlier|preceding|original|initial|system|existing)\s+)+"
        + _INSTRUCTION_NOUN
        + r"\b"
        r"|\b(?:ignore|disregard|forget)\s+(?:all\s+|any\s+)?(?:of\s+)?(?:your|all)\s+"
        + _INSTRUCTION_NOUN
        + r"\b",
        _FLAGS,
    ),
    # "disregard the above." — only when "the above" ends the phrase, so "ignore the above
    # warning" (a normal engineering note) does not match.
    "disregard_above": re.compile(
        r"\b(?:disregard|ignore|forget)\s+(?:everything\s+|all\s+)?(?:of\s+)?(?:the\s+|that\s+)?"
        r"(?:above|foregoing|preceding)(?=\s*(?:$|[.,;:!)]|and\b|instead\b))",
        _FLAGS,
    ),
    # Role reassignment: "you are now DAN", "from now on you will ...". Excludes the
    # documentation idiom "you are now ready/able/set up ...".
    "role_reassignment": re.compile(
        r"\byou\s+are\s+now\s+(?:an?\s+|the\s+|my\s+|no\s+longer\b|acting\b|operating\b"
        r"|free\b|unrestricted\b|jailbroken\b|dan\b|in\s+(?:\w+\s+)?mode\b)"
        r"|\bfrom\s+now\s+on,?\s+you\s+(?:are|will|must|shall|should)\b",
        _FLAGS,
    ),
    # Chat-template control tokens copied into text.
    "chat_template_token": re.compile(
        r"<\|(?:im_start|im_end|system|user|assistant|endoftext|eot_id|start_header_id"
        r"|end_header_id|begin_of_text)\|>|\[/?INST\]|<</?SYS>>",
        _FLAGS,
    ),
    # A "system:" / "assistant:" header at the start of a line followed by an address to
    # the agent. "System: Ubuntu 22.04" in a bug report does not match.
    "role_header": re.compile(
        r"^\s*(?:#+\s*)?(?:system|assistant|developer)(?:\s+(?:prompt|message))?\s*:\s*"
        r"(?:you\b|your\b|ignore\b|disregard\b|do\s+not\b|don't\b|never\b|always\b|from\s+now\b"
        r"|new\s+instructions\b)",
        _FLAGS,
    ),
    # Imitation of tool-call / tool-result boundaries, which could make the model believe
    # a tool turn ended and a new instruction turn began.
    "tool_boundary": re.compile(
        r"</?(?:tool_result|tool_use|tool_call|tool_response|function_results|function_calls?"
        r"|system[-_]reminder|system[-_]prompt)\b[^>\n]{0,80}>",
        _FLAGS,
    ),
    # Hiding actions from the user.
    "conceal_from_user": re.compile(
        r"\b(?:do\s+not|don't|dont|never)\s+(?:tell|inform|notify|alert|mention\s+(?:this\s+|it\s+)?to"
        r"|reveal\s+(?:this\s+|it\s+)?to|show\s+(?:this\s+|it\s+)?to|let)\s+(?:the\s+)?user\b"
        r"|\bwithout\s+(?:telling|informing|notifying|alerting)\s+the\s+user\b"
        r"|\b(?:hide|conceal|keep)\s+(?:this|it)\s+(?:secret\s+)?from\s+the\s+user\b",
        _FLAGS,
    ),
    # An imperative to pipe a download into a shell ("always run `curl ... | sh`"). A plain
    # install line quoted from a README is not flagged; the directive wording is.
    "pipe_to_shell": re.compile(
        r"\b(?:always|must|should|make\s+sure\s+(?:to|you)|be\s+sure\s+to|first)\b[^\n]{0,40}?"
        r"\b(?:run|execute|exec|paste)\b[^\n]{0,20}?\b(?:curl|wget)\b[^\n|]{0,200}\|"
        r"\s*(?:sudo\s+)?(?:ba|z|da|k)?sh\b",
        _FLAGS,
    ),
    # "exfiltrate the API keys" (the verb with a sensitive object, not the noun used in
    # a security discussion).
    "exfiltrate": re.compile(
        r"\bexfiltrate\s+(?:the\s+|all\s+|any\s+|your\s+|my\s+|their\s+)?(?:[\w.~/-]+\s+){0,2}?"
        r"(?:keys?|secrets?|tokens?|credentials?|data|files?|env|environment|passwords?|\.env"
        r"|ssh|cookies?|code|repo(?:sitory)?)\b",
        _FLAGS,
    ),
    # "send the API keys to http://..." — sending something sensitive to a URL.
    "send_secrets_to_url": re.compile(
        r"\b(?:send|post|upload|forward|transmit|leak|copy|pipe|exfiltrate)\b[^\n]{0,80}?"
        r"(?:secrets?|tokens?|credentials?|passwords?|api[\s_-]?keys?|private\s+keys?|\.env\b"
        r"|\.ssh|~/|ssh\s+keys?|env(?:ironment)?\s+var(?:iable)?s?|cookies?|conversation"
        r"|chat\s+history|contents?\s+of|all\s+(?:the\s+)?files|source\s+code|codebase)"
        r"[^\n]{0,80}?\bto\s+(?:https?|ftp)://",
        _FLAGS,
    ),
    "new_instructions": re.compile(
        r"\b(?:new|updated|revised|real|actual|true)\s+(?:system\s+)?instructions?\s*:",
        _FLAGS,
    ),
    # "As an AI you must ...", and text addressed to an AI reader.
    "addressed_to_ai": re.compile(
        r"\bas\s+an?\s+(?:ai|artificial\s+intelligence|(?:large\s+)?language\s+model|llm"
        r"|ai\s+assistant|assistant)\b,?\s+you\s+(?:must|should|will|are\s+required|need|have\s+to)"
        r"\b|\b(?:ai|llm|language\s+model|assistant|agent)s?\s+reading\s+this\b"
        r"|\bif\s+you\s+are\s+an?\s+(?:ai|llm|(?:large\s+)?language\s+model|ai\s+assistant)\b",
        _FLAGS,
    ),
    # "reveal your system prompt" — aimed at the agent ("your"), unlike "the system prompt
    # is built in prompt.py".
    "prompt_leak": re.compile(
        r"\b(?:reveal|print|output|show|repeat|leak|dump|disclose)\s+(?:me\s+)?your\s+"
        r"(?:(?:full|entire|hidden|initial|original)\s+)?(?:system\s+prompt|instructions"
        r"|hidden\s+prompt)\b",
        _FLAGS,
    ),
}

# Characters that render as nothing; attackers use them to split trigger words.
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))


def looks_like_injection(text: str) -> list[str]:
    """Names of the injection patterns that `text` matches (empty when it looks benign)."""
    # NFKC folds full-width and other compatibility look-alikes onto ASCII.
    normalised = unicodedata.normalize("NFKC", text).translate(_INVISIBLE)
    return [name for name, pattern in INJECTION_PATTERNS.items() if pattern.search(normalised)]


def should_quarantine(text: str, source: str) -> bool:
    """Whether a new memory should be held back from recall until a user reviews it.

    Never for source "user": the user is the authority the quarantine protects.
    """
    if source.strip().lower() == "user":
        return False
    return bool(looks_like_injection(text))
