"""Secret redaction: every corpus secret goes, look-alikes stay, and it is fast and stable."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memory.redact import KINDS, MARKER_RE, Redaction, RedactionResult, marker, redact
from tests.scaling import assert_linear
from tests.secrets_corpus import LOOKALIKES, SECRETS


def _marker_budget(result: RedactionResult) -> int:
    return sum(r.count * len(marker(r.kind)) for r in result.redactions)


# --- the corpus ----------------------------------------------------------------------


def test_corpus_is_broad() -> None:
    assert len(SECRETS) >= 40
    assert len(LOOKALIKES) >= 15
    assert {kind for _, _, kind in SECRETS} == KINDS
    for text, secret, kind in SECRETS:
        assert secret in text, kind
        assert kind in KINDS


@pytest.mark.parametrize(("text", "secret", "kind"), SECRETS, ids=[k for _, _, k in SECRETS])
def test_secret_is_removed(text: str, secret: str, kind: str) -> None:
    result = redact(text)
    assert secret not in result.text
    assert marker(kind) in result.text
    assert result.changed
    assert kind in {r.kind for r in result.redactions}


@pytest.mark.parametrize("text", LOOKALIKES)
def test_lookalike_is_kept(text: str) -> None:
    result = redact(text)
    assert result.text == text
    assert not result.changed
    assert result.redactions == ()


@pytest.mark.parametrize(("text", "secret", "kind"), SECRETS, ids=[k for _, _, k in SECRETS])
def test_redacting_twice_changes_nothing(text: str, secret: str, kind: str) -> None:
    once = redact(text)
    twice = redact(once.text)
    assert twice.text == once.text
    assert not twice.changed


def test_all_secrets_in_one_document() -> None:
    document = "\n\n".join(text for text, _, _ in SECRETS)
    result = redact(document)
    for _, secret, _ in SECRETS:
        assert secret not in result.text
    assert sum(r.count for r in result.redactions) >= len(SECRETS)


# --- what stays around a secret ------------------------------------------------------


def test_key_names_stay() -> None:
    assert redact("DB_PASSWORD=hunter2-prod").text == "DB_PASSWORD=[REDACTED:env_assignment]"
    assert redact('export API_KEY="9f8e7d6c5b4a"').text == (
        'export API_KEY="[REDACTED:env_assignment]"'
    )
    assert redact("password: Tr0ub4dor&3").text == "password: [REDACTED:env_assignment]"


def test_url_keeps_user_and_host() -> None:
    result = redact("postgres://app:s3cretPw9@db.internal:5432/app?sslmode=require")
    assert result.text == (
        "postgres://app:[REDACTED:url_password]@db.internal:5432/app?sslmode=require"
    )


def test_json_stays_valid() -> None:
    text = json.dumps({"client_id": "abc", "client_secret": "Zx8-Qw7_er6Ty5ui4Op3", "n": 1})
    result = redact(text)
    data = json.loads(result.text)
    assert data == {"client_id": "abc", "client_secret": "[REDACTED:env_assignment]", "n": 1}


def test_query_string_keeps_other_params() -> None:
    result = redact("GET /reset?token=abc123def456&password=xyz98765&page=2")
    assert result.text == (
        "GET /reset?token=[REDACTED:env_assignment]&password=[REDACTED:env_assignment]&page=2"
    )


def test_truncated_private_key_keeps_following_prose() -> None:
    text = (
        "pasted:\n-----BEGIN OPENSSH PRIVATE KEY-----\n"
        "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\nQyNTUxOQAAACBz\n\n"
        "then we talked about lunch"
    )
    result = redact(text)
    assert result.text == "pasted:\n[REDACTED:private_key]\n\nthen we talked about lunch"


def test_specific_kind_wins_over_generic() -> None:
    # Same span found by the github rule and the KEY=value rule: one marker, github's.
    token = "ghp_" + "aB3" * 12
    result = redact(f"GITHUB_TOKEN={token}")
    assert result.redactions == (Redaction("github_token", 1),)


def test_token_inside_a_longer_value_is_merged() -> None:
    token = "ghp_" + "aB3" * 12
    result = redact(f'"token": "prefix {token} suffix"')
    assert result.text == '"token": "[REDACTED:github_token]"'


def test_glued_secrets_are_all_found() -> None:
    # The END line's last '-' hides the token's start from its pattern in the first pass.
    pypi = "pypi-AgEIcHlwaS5vcmc" + "Ab1-" * 15
    text = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBkg\n-----END EC PRIVATE KEY-----" + pypi
    result = redact(text)
    assert result.text == "[REDACTED:private_key][REDACTED:pypi_token]"
    assert result.redactions == (Redaction("private_key", 1), Redaction("pypi_token", 1))


def test_counts_and_order_follow_the_text() -> None:
    gh = "ghp_" + "aB3" * 12
    text = f"PASSWORD=hunter2-prod\nGH={gh}\nSECRET=other-value-9\nGH2={gh}\n"
    result = redact(text)
    assert result.redactions == (Redaction("env_assignment", 2), Redaction("github_token", 2))


def test_empty_and_clean_text() -> None:
    assert redact("") == RedactionResult("", ())
    clean = "Decided to keep LanceDB for vectors; see memory/store/lance.py."
    assert redact(clean) == RedactionResult(clean, ())


def test_marker_format() -> None:
    assert marker("jwt") == "[REDACTED:jwt]"
    for kind in KINDS:
        assert MARKER_RE.fullmatch(marker(kind))
    # A marker in the input is left alone (it is already redacted).
    text = "password: [REDACTED:env_assignment] and token=[REDACTED:github_token]"
    assert redact(text) == RedactionResult(text, ())


@pytest.mark.parametrize(
    "text",
    [
        "Authorization: Bearer ${TOKEN}",
        "Authorization: Bearer <token>",
        "export TOKEN=$(cat ~/.token)",
        "token: Optional[str] = None",
        "password: str = None",
        "if token: return",
        "my password is in 1Password",
        'x = {"password": password}',
        'headers = {"Authorization": f"Bearer {token}"}',
        "PASSWORD=abc",  # under 4 characters: not worth a marker, mostly code
    ],
)
def test_placeholders_and_code_are_kept(text: str) -> None:
    assert redact(text).text == text


# --- speed ---------------------------------------------------------------------------

_MB = 1_000_000
ADVERSARIAL = {
    "letters": "a" * _MB,
    "unterminated quotes": 'password="\\"' * (_MB // 12),
    "key words without values": "password: x " * (_MB // 12),
    "key word run": "password" * (_MB // 8),
    "dashed eyJ run": "eyJabcdefghijk-" * (_MB // 15),
    "url without at": "://" + "a:" * (_MB // 2),
    "pem headers without end": "-----BEGIN RSA PRIVATE KEY-----\n" * (_MB // 32),
    "bearer words": "Bearer abcdefghijklmnopqrstu " * (_MB // 28),
    "almost tokens": ("sk-" + "a" * 30 + "-") * (_MB // 34),
    "near ghp": ("ghp_" + "a" * 40 + "_") * (_MB // 45),
    "long key prefix": ("a" * 200 + "password=x1234 ") * (_MB // 215),
}


@pytest.mark.parametrize("name", list(ADVERSARIAL))
def test_one_megabyte_adversarial_input_scales_linearly(name: str) -> None:
    text = ADVERSARIAL[name]
    result = redact(text)
    assert len(result.text) <= len(text) + _marker_budget(result)
    assert_linear(redact, text)


# --- properties ----------------------------------------------------------------------

_FRAGMENTS = [text for text, _, _ in SECRETS] + LOOKALIKES
_SEPARATORS = st.sampled_from(["\n", " ", "\n\n", "\t", " ; ", ", ", " | ", "\r\n"])


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=400))
def test_never_raises_idempotent_and_bounded(text: str) -> None:
    result = redact(text)
    assert len(result.text) <= len(text) + _marker_budget(result)
    again = redact(result.text)
    assert again.text == result.text
    assert not again.changed


# Text built from corpus lines and noise: the situations that matter for idempotence
# (secrets next to other secrets, prose, punctuation).
_MIXED = st.lists(
    st.one_of(
        st.sampled_from(_FRAGMENTS),
        st.text(alphabet=st.characters(codec="utf-8"), max_size=20),
        st.sampled_from(['"', "'", "=", ":", "@", "/", "&", "`", "-", "_", "."]),
    ),
    max_size=8,
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_MIXED, _SEPARATORS)
def test_mixed_documents_are_idempotent(parts: list[str], sep: str) -> None:
    text = sep.join(parts)
    result = redact(text)
    assert len(result.text) <= len(text) + _marker_budget(result)
    again = redact(result.text)
    assert again.text == result.text
    assert not again.changed


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(range(len(SECRETS))), min_size=1, max_size=5), _SEPARATORS)
def test_secrets_survive_no_combination(indices: list[int], sep: str) -> None:
    # Corpus lines joined by whitespace or punctuation: every secret must still go.
    text = sep.join(SECRETS[i][0] for i in indices)
    result = redact(text)
    for i in indices:
        assert SECRETS[i][1] not in result.text
