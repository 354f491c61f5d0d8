"""Remove secrets from text before memctl writes it anywhere.

Every capture path (explicit `remember`, hooks, transcripts, imports) calls `redact()`
so that an API key pasted into a chat never reaches the store, the index or an export.

Design:
* Each secret is replaced by a marker ``[REDACTED:<kind>]`` (kinds: `KINDS`); only the
  secret value goes, the key name / user name / host around it stays so the memory
  still reads well. A private key block goes whole, BEGIN/END lines included.
* Provider tokens with a distinctive shape (``ghp_...``, ``AKIA...``, JWTs, PEM blocks)
  are matched anywhere. Values without a shape are only taken from a context that
  names them a secret: ``DB_PASSWORD=...``, ``"api_key": "..."``, ``Authorization:``,
  ``scheme://user:password@host``.
* All candidate spans are collected from the *original* text, overlapping spans are
  merged (the most specific kind names the marker), and the text is rebuilt once.
  Passes repeat until one finds nothing, so ``redact(redact(x)) == redact(x)``.
* Patterns start with a literal (or a short key word), are tried only at the start of
  a run of their own characters, and never rescan text after a failed attempt, so the
  cost is linear in the input size (1 MB of adversarial input: well under a second).

Intentionally *not* redacted (false positives would wreck ordinary notes):
* placeholders and references: empty values, values under 4 characters in assignments,
  ``${VAR}``, ``$VAR``, ``%VAR%``, ``<your token>``, ``{{ secrets.X }}``, ``****``,
  ``your_token_here``, and well-known dummies such as ``changeme``, ``password``, ``secret``;
* code, not literals: ``token=token``, ``password=self.password``, ``key=get_key()``,
  ``password: str``;
* prose that merely mentions a secret's name ("the PASSWORD env var is read in config.py");
* random-looking but public strings: git SHAs, sha256 digests, UUIDs, base64 of JSON
  without JWT structure, version strings, Twilio account SIDs (``AC...``, an identifier).
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass

MARKER_PREFIX = "[REDACTED:"
# Matches any marker this module emits; callers can use it to count or style markers.
MARKER_RE = re.compile(r"\[REDACTED:[a-z0-9_]+\]")


def marker(kind: str) -> str:
    """The text that replaces a secret of `kind`."""
    return f"{MARKER_PREFIX}{kind}]"


@dataclass(frozen=True)
class Redaction:
    kind: str
    count: int


@dataclass(frozen=True)
class RedactionResult:
    text: str
    redactions: tuple[Redaction, ...]

    @property
    def changed(self) -> bool:
        return bool(self.redactions)


# --- value filters -------------------------------------------------------------------

# Values that stand for a secret without being one. Lower-case; compared case-insensitively.
_PLACEHOLDER_WORDS = frozenset(
    {
        "changeme", "change_me", "change-me", "password", "passwd", "pass", "secret",
        "token", "apikey", "api_key", "placeholder", "redacted", "example", "todo", "tbd",
        "dummy", "none", "null", "nil", "undefined", "true", "false", "yes", "no", "on",
        "off", "enabled", "disabled", "required", "optional", "hidden", "masked",
        # auth schemes, not credentials ("auth=basic")
        "basic", "bearer", "digest", "oauth", "oauth2", "jwt", "ntlm", "kerberos",
        # type annotations ("password: str", "token: string;")
        "str", "string", "bytes", "int", "bool", "boolean", "number", "any", "object",
        "secretstr", "dict", "list",
        # code after a colon ("if token: return")
        "return", "continue", "break", "raise", "yield", "await", "self", "this",
    }
)  # fmt: skip
_PLACEHOLDER_RE = re.compile(
    r"""
    \$\{.*                      # ${VAR}, ${VAR:-default}
    | \$\(.*                    # $(command)
    | (?-i:\$[A-Z_][A-Z0-9_]*)  # $VAR (upper case: an env reference, not "$ecret1")
    | %[A-Za-z_]\w*%            # %VAR% (Windows)
    | %\(.*                     # %(name)s
    | \{\{.*                    # {{ template }}
    | <.*                       # <your token>
    | (.)\1*                    # ****, xxxx, ....: one repeated character
    | your[\W_]?.*              # your_token_here, your-api-key
    | .*[\W_]here               # api_key_here, token-goes-here
    """,
    re.IGNORECASE | re.VERBOSE | re.DOTALL,
)


def _is_placeholder(value: str, min_len: int) -> bool:
    value = value.strip()
    if len(value) < min_len or MARKER_PREFIX in value:
        # Short values carry little risk and are mostly code; a marker means "done".
        return True
    return value.lower() in _PLACEHOLDER_WORDS or _PLACEHOLDER_RE.fullmatch(value) is not None


_LOWER = re.compile("[a-z]")
_UPPER = re.compile("[A-Z]")
_DIGIT = re.compile("[0-9]")


def _looks_random(value: str) -> bool:
    """True for machine-made tokens: they mix at least two of lower, upper and digits."""
    classes = (_LOWER.search(value), _UPPER.search(value), _DIGIT.search(value))
    return sum(c is not None for c in classes) >= 2


def _has_digit(value: str) -> bool:
    return _DIGIT.search(value) is not None


# --- rules ---------------------------------------------------------------------------

# Case-insensitive rules run on this ASCII-only lower-casing of the text: unlike
# str.lower() it never changes the length, so match offsets hold for the original, and
# plain literals there are much faster than re.IGNORECASE.
_ASCII_FOLD = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)

# Given the match, the original text and the secret's span: the span to redact, or None
# to drop the match.
_Check = Callable[[re.Match[str], str, tuple[int, int]], tuple[int, int] | None]


def _if(predicate: Callable[[str], bool]) -> _Check:
    """A check that keeps the span when `predicate` holds for the secret's text."""
    return lambda _m, text, span: span if predicate(text[span[0] : span[1]]) else None


@dataclass(frozen=True)
class _Rule:
    kind: str
    pattern: re.Pattern[str]
    # The group holding the secret; with several names, the first that took part.
    group: int | tuple[str, ...] = 0
    check: _Check | None = None
    folded: bool = False  # match against the ASCII-lower-cased text

    def spans(self, text: str, folded: str) -> Iterator[tuple[int, int]]:
        for m in self.pattern.finditer(folded if self.folded else text):
            span: tuple[int, int] | None = None
            if isinstance(self.group, int):
                span = m.span(self.group)
            else:
                for name in self.group:  # the regex guarantees one of them took part
                    if m[name] is not None:
                        span = m.span(name)
                        break
            if self.check is not None:
                span = self.check(m, text, span)
            if span is not None:
                yield span


def _token(prefixes: str, body: str, chars: str) -> re.Pattern[str]:
    """A token with a literal prefix that is not part of a longer run of `chars`.

    `prefixes` are fixed-width alternatives separated by "|". The prefix comes first so
    the regex engine can skip ahead to it; the look-behind after it then rejects a start
    inside a run, so the body is scanned at most once per run, and a greedy body never
    fails the look-ahead: matching stays linear.
    """
    starts = "|".join(f"{p}(?<![{chars}]{p})" for p in prefixes.split("|"))
    return re.compile(rf"(?:{starts}){body}(?![{chars}])")


_W = r"A-Za-z0-9_"
_W_DASH = r"A-Za-z0-9_\-"

# Key names that announce a secret value. The name must *end* with one of these words
# (PASSWORD_MIN_LENGTH, TOKEN_TTL and max_tokens are left alone); anything may come
# before it (DB_PASSWORD, apiKey, --password, spring.datasource.password).
_SECRET_KEY_WORDS = (
    r"(?:pass(?:word|wd|phrase)|secret|token|auth|credentials?"
    r"|(?:api|access|private|secret|signing|encryption|master|session)[_-]?key"
    r"|client[_-]?secret)"
)
_BARE = r"[^\s'\"`,;()\[\]{}<>&]"
# Runs on folded text. It starts at the secret word; the rest of the key name is
# found by `_key_before`, which keeps the regex free of a leading unbounded prefix.
_ASSIGNMENT = re.compile(
    rf"""
    (?P<word>{_SECRET_KEY_WORDS})(?![\w.-])
    (?P<kq>["']?)                         # closing quote of a JSON/dict key
    [ \t]*(?P<sep>=>|:=|:(?!:)|=(?!=))[ \t]*
    (?:
        "(?P<dq>[^"\r\n]*)"               # no escapes: an escaped quote ends the value early,
      | '(?P<sq>[^'\r\n]*)'               # but scanning escapes would make failures quadratic
      | (?P<bare>{_BARE}+(?:&(?![\w.\-]+=){_BARE}*)*)  # "&" ends it before "&page=2"
    )
    """,
    re.VERBOSE,
)
_MAX_KEY_CHARS = 64
# What may follow an unquoted `key: value` for it to be a config line rather than prose
# ("Token: we should rotate it") or a type annotation with a default.
_LINE_TAIL = re.compile(r"[ \t]*[\"'`,;)}\]]*[ \t]*(?:#|//|\r?\n|$)")
_IDENTIFIER = re.compile(r"[A-Za-z_]\w*")
_DOTTED_NAME = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+")
_SNAKE_NAME = re.compile(r"[a-z_][a-z0-9_]*_[a-z0-9_]*")
_KEY_WORD_IN_VALUE = re.compile(_SECRET_KEY_WORDS, re.IGNORECASE)


def _key_before(text: str, word_start: int, word_end: int) -> tuple[int, str]:
    """Start and text of the key name that ends with the word at [word_start, word_end)."""
    start = word_start
    limit = max(0, word_end - _MAX_KEY_CHARS)  # bounded: keeps the whole pass linear
    while start > limit and (text[start - 1].isalnum() or text[start - 1] in "_.-"):
        start -= 1
    return start, text[start:word_end]


def _check_assignment(m: re.Match[str], text: str, span: tuple[int, int]) -> tuple[int, int] | None:
    value = text[span[0] : span[1]]
    if _is_placeholder(value, 4):
        return None
    key_start, key = _key_before(text, *m.span("word"))
    if text.endswith("://", 0, key_start):
        return None  # scheme://token:...@host is userinfo: the url_password rule's job
    if m["bare"] is None:
        return span  # a quoted literal
    end = span[1]
    if end < len(text) and text[end] in "([":
        return None  # get_token(...), os.environ[...]: code
    if value.lower().replace("-", "_") == key.lstrip("-").lower().replace("-", "_"):
        return None  # token=token: a keyword argument passed through
    if _DOTTED_NAME.fullmatch(value):
        return None  # self.password, settings.SECRET_KEY
    if _SNAKE_NAME.fullmatch(value) and _KEY_WORD_IN_VALUE.search(value):
        return None  # password=password_input, auth=auth_header
    if m["sep"] == ":":
        # JSON allows no bare words, so {"password": pw} is a Python/JS literal.
        if m["kq"] and _IDENTIFIER.fullmatch(value):
            return None
        if not _LINE_TAIL.match(text, end):
            return None
    return span


def _is_loose_bearer(value: str) -> bool:
    return _looks_random(value) and not _is_placeholder(value, 16)


# Ordered from most to least specific: when spans overlap, the earlier rule names the
# marker ("GITHUB_TOKEN=ghp_..." is a github_token, not an env_assignment).
_RULES: tuple[_Rule, ...] = (
    _Rule("aws_access_key", _token("AKIA|ASIA|ABIA|ACCA", "[A-Z0-9]{16}", _W)),
    _Rule(
        "aws_secret_key",
        re.compile(
            r"(?:aws[_-]?secret[_-]?(?:access[_-]?)?key|secret[_-]?access[_-]?key)"
            r"[\"']?[ \t]*[:=][ \t]*[\"']?([a-z0-9/+]{40})(?![a-z0-9/+=])"
        ),
        group=1,
        folded=True,
    ),
    _Rule("github_token", _token("gh[pousr]_", "[A-Za-z0-9]{36,251}", _W)),
    _Rule("github_token", _token("github_pat_", "[A-Za-z0-9_]{22,}", _W)),
    _Rule("gitlab_token", _token("glpat-|gldt-|glrt-|glptt-", r"[A-Za-z0-9_\-]{20,}", _W_DASH)),
    _Rule("slack_token", _token("xox[abposr]-|xapp-", r"[A-Za-z0-9\-]{10,}", _W_DASH)),
    _Rule(
        "slack_webhook",
        re.compile(r"hooks\.slack\.com/(?:services|workflows|triggers)/([a-z0-9_/\-]{8,})"),
        group=1,
        folded=True,
    ),
    _Rule("stripe_key", _token("sk_live_|rk_live_|sk_test_|rk_test_", "[A-Za-z0-9]{16,}", _W)),
    _Rule("stripe_key", _token("whsec_", "[A-Za-z0-9]{24,}", _W)),
    _Rule("anthropic_key", _token("sk-ant-", r"[A-Za-z0-9_\-]{20,}", _W_DASH)),
    _Rule(
        "openai_key",
        _token("sk-", r"(?:(?:proj|svcacct|admin)-[A-Za-z0-9_\-]{20,}|[A-Za-z0-9]{20,})", _W_DASH),
        # Keys are random, so they hold a digit; "sk-" + a long word is something else.
        check=_if(_has_digit),
    ),
    _Rule("google_api_key", _token("AIza", r"[A-Za-z0-9_\-]{35}", _W_DASH)),
    _Rule(
        "huggingface_token",
        _token("hf_", "[A-Za-z0-9]{30,}", _W),
        check=_if(lambda token: _looks_random(token[3:])),
    ),
    _Rule("npm_token", _token("npm_", "[A-Za-z0-9]{36}", _W)),
    _Rule("pypi_token", _token("pypi-AgE", r"[A-Za-z0-9_\-]{50,}", _W_DASH)),
    _Rule("twilio_api_key", _token("SK", "[0-9a-fA-F]{32}", _W)),
    _Rule(
        "sendgrid_key",
        _token(r"SG\.", r"[A-Za-z0-9_\-]{16,32}\.[A-Za-z0-9_\-]{16,64}", r"A-Za-z0-9_.\-"),
    ),
    _Rule(
        "azure_account_key",
        re.compile(r"(?:accountkey|sharedaccesskey)[ \t]*=[ \t]*([a-z0-9+/]{20,}={0,2})"),
        group=1,
        folded=True,
    ),
    # '.' is in the run class so a JWT is only tried at the start of a dotted run.
    _Rule(
        "jwt",
        _token("eyJ", r"[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]*", r"\w.\-"),
    ),
    _Rule(
        "basic_auth",
        re.compile(
            r"authorization(?<![\w]authorization)[\"']?[ \t]*[:=][ \t]*[\"']?basic[ \t]+"
            r"([a-z0-9+/]+=*)"
        ),
        group=1,
        check=_if(lambda value: not _is_placeholder(value, 8)),
        folded=True,
    ),
    _Rule(
        "bearer_token",
        re.compile(
            r"authorization(?<![\w]authorization)[\"']?[ \t]*[:=][ \t]*[\"']?(?:bearer|token)"
            r"[ \t]+([a-z0-9._~+/\-]+=*)"
        ),
        group=1,
        check=_if(lambda value: not _is_placeholder(value, 8)),
        folded=True,
    ),
    # "Bearer <token>" outside a header: only tokens that look machine-made.
    _Rule(
        "bearer_token",
        re.compile(r"bearer(?<![\w\-]bearer)[ \t]+([a-z0-9._~+/\-]{16,}=*)"),
        group=1,
        check=_if(_is_loose_bearer),
        folded=True,
    ),
    # scheme://user:password@host -- keep user and host. '/' ends user and password, so a
    # failed attempt never scans past the next '/', and '://' contains one.
    _Rule(
        "url_password",
        re.compile(r"://(?<=[A-Za-z0-9]://)([^\s:/?#@'\"`<>\[\]]*):([^\s/?#@'\"`<>\[\]]+)@"),
        group=2,
        check=_if(lambda password: not _is_placeholder(password, 1)),
    ),
    _Rule(
        "env_assignment",
        _ASSIGNMENT,
        group=("dq", "sq", "bare"),
        check=_check_assignment,
        folded=True,
    ),
)

# --- private keys --------------------------------------------------------------------

_PEM_LABEL = r"(?:[A-Z0-9]+ ){0,3}PRIVATE KEY(?: BLOCK)?"
_PEM_BEGIN = re.compile(rf"-----BEGIN {_PEM_LABEL}-----")
_PEM_END = re.compile(rf"-----END {_PEM_LABEL}-----")
# One line of a PEM body (real newline or a JSON-escaped "\n"): base64 or a
# "Proc-Type: 4,ENCRYPTED" style header; it must fill the whole line.
_PEM_LINE = re.compile(
    r"(?:\r?\n|\\r?\\n)[ \t]*(?P<body>[A-Za-z0-9+/=]{8,}|[A-Za-z\-]+:[ \t][^\r\n\\]*)?[ \t]*"
    r"(?=\r?\n|\\r?\\n|$|[\"'])"
)


def _private_key_spans(text: str) -> Iterator[tuple[int, int]]:
    pos = 0
    end_exists = True
    while (begin := _PEM_BEGIN.search(text, pos)) is not None:
        end = _PEM_END.search(text, begin.end()) if end_exists else None
        if end is not None:
            yield begin.start(), end.end()
            pos = end.end()
            continue
        # Truncated paste: no END anywhere after this point, so none for later BEGINs
        # either. Take the header and the body lines that follow it.
        end_exists = False
        stop = cursor = begin.end()
        while (line := _PEM_LINE.match(text, cursor)) is not None and line.end() > cursor:
            cursor = line.end()
            if line["body"]:
                stop = cursor  # blank lines join the span only if more body follows
        yield begin.start(), stop
        pos = stop


# --- public API ----------------------------------------------------------------------

KINDS: frozenset[str] = frozenset({"private_key"} | {rule.kind for rule in _RULES})


@dataclass(slots=True)
class _Span:
    start: int
    end: int
    priority: int
    kind: str


def redact(text: str) -> RedactionResult:
    """Replace every secret in `text` by ``[REDACTED:<kind>]``.

    `redactions` counts markers per kind, in the order the kinds were first found.
    """
    counts: dict[str, int] = {}
    # A secret glued to another one ("-----END ... KEY-----pypi-AgE...") is hidden from
    # its pattern by the other's last character, and shows up once that one is a marker.
    # So repeat until a pass finds nothing: this makes the result a fixed point
    # (idempotent by construction). It ends because every pass turns some non-marker
    # text into markers and no pattern matches a marker; a second pass is only paid
    # for text that had secrets, and nearly always finds nothing.
    while True:
        redacted, found = _redact_once(text)
        if not found or redacted == text:  # the second test is only a safety net
            break
        text = redacted
        for kind, n in found.items():
            counts[kind] = counts.get(kind, 0) + n
    return RedactionResult(text, tuple(Redaction(kind, n) for kind, n in counts.items()))


def _redact_once(text: str) -> tuple[str, dict[str, int]]:
    # (start, end, priority, kind); priority 0 is the most specific.
    spans = [(s, e, 0, "private_key") for s, e in _private_key_spans(text)]
    folded = text.translate(_ASCII_FOLD)
    for priority, rule in enumerate(_RULES, start=1):
        spans.extend((s, e, priority, rule.kind) for s, e in rule.spans(text, folded) if e > s)
    if not spans:
        return text, {}

    spans.sort()
    merged: list[_Span] = []
    for start, end, priority, kind in spans:
        last = merged[-1] if merged else None
        if last is not None and start < last.end:
            # Overlap (e.g. a token inside a quoted value): one marker, most specific kind.
            last.end = max(last.end, end)
            if priority < last.priority:
                last.priority, last.kind = priority, kind
        else:
            merged.append(_Span(start, end, priority, kind))

    parts: list[str] = []
    counts: dict[str, int] = {}  # insertion order = first occurrence
    cursor = 0
    for span in merged:
        parts.append(text[cursor : span.start])
        parts.append(marker(span.kind))
        counts[span.kind] = counts.get(span.kind, 0) + 1
        cursor = span.end
    parts.append(text[cursor:])
    return "".join(parts), counts
