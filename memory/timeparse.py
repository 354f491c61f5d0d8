"""Time expressions in recall queries: "what did we decide last week", "bugs since 2024-05-01".

`parse_time_expression` finds one expression and turns it into a `TimeWindow`;
`strip_time_expression` removes it so the rest of the query searches on content only;
`time_boost` scores an event time against the window.

Filter or boost. A window is a hard **filter** when the user named the bound explicitly:
an ISO or calendar date ("on 2024-05-01", "on May 1"), a year or month with its year
("in 2023", "in March 2024"), a bound ("before", "after", "since", "until", "between ... and
...") or a numeric span ("in the last 7 days"). Vague relative phrases are a soft **boost**:
"today", "yesterday", "this/last week/month/year", "N days ago", "recently"/"lately" (last
RECENT_DAYS days), "in March" (no year), weekdays ("last Friday", "on Monday"), "a few days
ago". People say "last week" for anything from four to twelve days back, so excluding
memories just outside the calendar week would lose the one they mean. A boost window has a
`slack`: `time_boost` decays smoothly outside it.

Calendar conventions: calendar boundaries (midnight, Monday-based ISO weeks, month starts)
are computed in `now`'s time zone, so pass a local `now` to get local days; a naive `now` is
taken as UTC. The returned bounds are UTC. A date without a year ("on May 1", "in March") is
the most recent such date or month that is not in the future. "last Friday" is the most
recent Friday before today; "on Friday" may be today; "this Friday" is in the current week.

Never raises: anything unparseable yields None.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal

Mode = Literal["filter", "boost"]

# "recently" / "lately" look back this many days.
RECENT_DAYS = 14
# A boost window's slack is half its width, at least this much.
MIN_SLACK = timedelta(hours=1)
# How many years back to look for a yearless date (Feb 29 needs up to eight).
_YEARLESS_LOOKBACK = 8


@dataclass(frozen=True)
class TimeWindow:
    """A time range recognised in a query."""

    start: datetime | None  # inclusive, timezone-aware UTC; None = unbounded
    end: datetime | None  # exclusive, timezone-aware UTC; None = unbounded
    mode: Mode
    matched: str  # the span of the query that was recognised, verbatim
    # Boost windows only: distance outside the window at which time_boost falls to 0.5.
    slack: timedelta = timedelta(0)

    def contains(self, moment: datetime) -> bool:
        t = _as_utc(moment)
        return (self.start is None or t >= self.start) and (self.end is None or t < self.end)


def _as_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


_Span = tuple[datetime, datetime]
# (start, end, mode) of a recognised expression, in now's time zone.
_Result = tuple[datetime | None, datetime | None, Mode]


@dataclass(frozen=True)
class _Ctx:
    """Calendar arithmetic relative to `now`, in now's time zone."""

    now: datetime

    @property
    def today(self) -> date:
        return self.now.date()

    def midnight(self, day: date) -> datetime:
        return datetime.combine(day, time(), tzinfo=self.now.tzinfo)

    def days(self, first: date, count: int = 1) -> _Span:
        return self.midnight(first), self.midnight(first + timedelta(days=count))

    def week(self, day: date) -> _Span:
        return self.days(day - timedelta(days=day.weekday()), 7)

    def month(self, year: int, month: int) -> _Span:
        next_year, next_month = _shift_month(year, month, 1)
        return self.midnight(date(year, month, 1)), self.midnight(date(next_year, next_month, 1))

    def year(self, year: int) -> _Span:
        return self.midnight(date(year, 1, 1)), self.midnight(date(year + 1, 1, 1))


def _shift_month(year: int, month: int, delta: int) -> tuple[int, int]:
    y, m0 = divmod(year * 12 + (month - 1) + delta, 12)
    return y, m0 + 1


def _minus(moment: datetime, n: int, unit: str) -> datetime:
    """`moment` minus n units; months and years keep the day, clamped to the month's end."""
    if unit in ("hour", "day", "week"):
        return moment - timedelta(**{unit + "s": n})
    months = n * (12 if unit == "year" else 1)
    year, month = _shift_month(moment.year, moment.month, -months)
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


# --- Vocabulary -------------------------------------------------------------------------

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_NUMBER_WORDS = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
    "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12,
}  # fmt: skip
# Quantities that are themselves vague, so the window they make is a boost.
_VAGUE_NUMBERS = {"couple": 2, "few": 3, "several": 4}

_MONTH_NAMES = (
    r"january|february|march|april|june|july|august|september|october|november|december"
    r"|jan|feb|mar|apr|jun|jul|aug|sept|sep|oct|nov|dec"
)
# "may" is also a modal verb; next to a day or year it is a month, but alone ("in may")
# only when followed by something a verb would not be.
_MAY_ALONE = r"may(?=\s*$|\s*[?.!,;:)]|\s+(?:and|or|but|when|we|i|about|for|the)\b)"
_MONTH = rf"(?P<month>(?:{_MONTH_NAMES}|may)(?![a-z]))"
_MONTH_ALONE = rf"(?P<month>(?:{_MONTH_NAMES})(?![a-z])|{_MAY_ALONE})"
_DAY = r"(?P<day>[0-9]{1,2})(?:st|nd|rd|th)?(?![0-9a-z])"
_YEAR = r"(?P<year>(?:19|20|21)[0-9]{2})(?![0-9])"
_WEEKDAY = rf"(?P<weekday>{'|'.join(_WEEKDAYS)})"
_NUM = (
    r"(?P<num>[0-9]{1,4}|a\s+couple(?:\s+of)?|couple(?:\s+of)?|a\s+few|few|several"
    r"|an?|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve)"
)
_UNIT = r"(?P<unit>hour|day|week|month|year)s?"
_UNIT_SINGULAR = r"(?P<unit>hour|day|week|month|year)"
# Prepositions that belong to a relative expression, so stripping leaves no "from" behind.
_LEAD = r"(?:(?:from|during|over|for|of|in)\s+)?"
_ROLLING_LEAD = r"(?:(?:in|over|within|during|for|from)\s+)?"


def _month_number(name: str) -> int:
    return _MONTHS.index(name[:3].lower()) + 1


def _number(raw: str) -> tuple[int, bool]:
    """(value, vague) for a quantity such as "3", "two", "a couple of"."""
    words = [w for w in raw.lower().split() if w not in ("a", "of")] or ["a"]
    word = words[-1]
    if word.isdigit():
        return int(word), False
    if word in _VAGUE_NUMBERS:
        return _VAGUE_NUMBERS[word], True
    return _NUMBER_WORDS[word], False


# --- Anchors: expressions that denote one span of time ----------------------------------


def _recent_date(ctx: _Ctx, month: int, day: int) -> date | None:
    """The latest month/day that is not after today (None if it never exists)."""
    for year in range(ctx.today.year, ctx.today.year - _YEARLESS_LOOKBACK - 1, -1):
        try:
            candidate = date(year, month, day)
        except ValueError:
            continue
        if candidate <= ctx.today:
            return candidate
    return None


def _span_iso(m: re.Match[str], ctx: _Ctx) -> _Span | None:
    return ctx.days(date(int(m["iy"]), int(m["im"]), int(m["id"])))


def _span_iso_month(m: re.Match[str], ctx: _Ctx) -> _Span | None:
    return ctx.month(int(m["iy"]), int(m["im"]))


def _span_day_of_month(m: re.Match[str], ctx: _Ctx) -> _Span | None:
    month, day = _month_number(m["month"]), int(m["day"])
    found = date(int(m["year"]), month, day) if m["year"] else _recent_date(ctx, month, day)
    return None if found is None else ctx.days(found)


def _span_month_year(m: re.Match[str], ctx: _Ctx) -> _Span | None:
    return ctx.month(int(m["year"]), _month_number(m["month"]))


def _span_month(m: re.Match[str], ctx: _Ctx) -> _Span | None:
    month, today = _month_number(m["month"]), ctx.today
    # "in March" may be the current month; "last March" is strictly before it.
    latest = today.month - 1 if m["mlast"] else today.month
    return ctx.month(today.year if month <= latest else today.year - 1, month)


def _span_year(m: re.Match[str], ctx: _Ctx) -> _Span | None:
    year = int(m["year"])
    # A four-digit number well in the future is more likely a quantity ("in 2048 bytes").
    return None if year > ctx.today.year + 1 else ctx.year(year)


def _span_ago(m: re.Match[str], ctx: _Ctx) -> _Span | None:
    n, _ = _number(m["num"])
    unit, today = m["unit"].lower(), ctx.today
    if unit == "hour":
        moment = ctx.now - timedelta(hours=n)
        return moment - timedelta(hours=1), moment + timedelta(hours=1)
    if unit == "day":
        return ctx.days(today - timedelta(days=n))
    if unit == "week":
        return ctx.week(today - timedelta(weeks=n))
    if unit == "month":
        return ctx.month(*_shift_month(today.year, today.month, -n))
    return ctx.year(today.year - n)


def _span_calendar(m: re.Match[str], ctx: _Ctx) -> _Span | None:
    back = 0 if m["which"].lower() in ("this", "current") else 1
    unit, today = m["cunit"].lower(), ctx.today
    if unit == "week":
        return ctx.week(today - timedelta(weeks=back))
    if unit == "month":
        return ctx.month(*_shift_month(today.year, today.month, -back))
    return ctx.year(today.year - back)


def _span_weekday(m: re.Match[str], ctx: _Ctx) -> _Span | None:
    target, today = _WEEKDAYS.index(m["weekday"].lower()), ctx.today
    prefix = (m["wprefix"] or "").lower()
    if prefix == "this":
        return ctx.days(today + timedelta(days=target - today.weekday()))
    if prefix in ("last", "past"):
        back = (today.weekday() - target - 1) % 7 + 1
    else:
        back = (today.weekday() - target) % 7
    return ctx.days(today - timedelta(days=back))


def _span_day_word(m: re.Match[str], ctx: _Ctx) -> _Span | None:
    back = 1 if m["dayword"].lower() == "yesterday" else 0
    return ctx.days(ctx.today - timedelta(days=back))


_Resolver = Callable[[re.Match[str], _Ctx], _Span | None]

_ISO = r"(?P<iy>[0-9]{4})[-/](?P<im>[0-9]{1,2})[-/](?P<id>[0-9]{1,2})(?![0-9])"
_ISO_MONTH = r"(?P<iy>[0-9]{4})-(?P<im>[0-9]{2})(?![0-9]|-[0-9])"
_MONTH_DAY = rf"{_MONTH}\s+(?:the\s+)?{_DAY}(?:,?\s+{_YEAR})?"
_DAY_MONTH = rf"(?:the\s+)?{_DAY}\s+(?:of\s+)?{_MONTH}(?:,?\s+{_YEAR})?"
_MONTH_YEAR = rf"{_MONTH},?\s+{_YEAR}"
_AGO = rf"{_NUM}\s+{_UNIT}\s+ago"
_CALENDAR = r"(?P<which>this|current|last|previous|prior)\s+(?P<cunit>week|month|year)"
_WEEKDAY_ANCHOR = rf"(?:(?P<wprefix>last|past|this|on)\s+)?{_WEEKDAY}"
_DAY_WORD = r"(?:earlier\s+)?(?P<dayword>today|yesterday)"
_MONTH_ANCHOR = rf"(?:(?P<mlast>last)\s+)?{_MONTH_ALONE}"

# Longest forms first: inside a combined alternation the regex engine takes the first
# alternative that lets the whole expression match.
_ANCHORS: tuple[tuple[str, _Resolver], ...] = (
    (_ISO, _span_iso),
    (_ISO_MONTH, _span_iso_month),
    (_MONTH_DAY, _span_day_of_month),
    (_DAY_MONTH, _span_day_of_month),
    (_MONTH_YEAR, _span_month_year),
    (_AGO, _span_ago),
    (_CALENDAR, _span_calendar),
    (_WEEKDAY_ANCHOR, _span_weekday),
    (_DAY_WORD, _span_day_word),
    (_MONTH_ANCHOR, _span_month),
    (_YEAR, _span_year),
)

_FLAGS = re.IGNORECASE | re.ASCII
_COMPILED_ANCHORS = tuple((re.compile(p, _FLAGS), fn) for p, fn in _ANCHORS)
# All anchors without their named groups, for expressions that hold two of them.
_ANY_ANCHOR = "(?:" + "|".join(re.sub(r"\(\?P<\w+>", "(?:", p) for p, _ in _ANCHORS) + ")"


def _resolve_anchor(text: str, ctx: _Ctx) -> _Span | None:
    for pattern, resolve in _COMPILED_ANCHORS:
        m = pattern.fullmatch(text)
        if m is not None:
            span = resolve(m, ctx)
            if span is not None:
                return span
    return None


# --- Rules: whole expressions -------------------------------------------------------------

_Handler = Callable[[re.Match[str], _Ctx], _Result | None]


def _anchor_rule(
    prefix: str,
    anchor: str,
    resolve: _Resolver,
    mode: Mode,
    require_any: tuple[str, ...] = (),
) -> tuple[str, _Handler]:
    """A rule that is one anchor with a prefix; `require_any` names groups of which at
    least one must have matched (e.g. a bare "May 1" needs "on" or a year)."""

    def handle(m: re.Match[str], ctx: _Ctx) -> _Result | None:
        if require_any and all(m[g] is None for g in require_any):
            return None
        span = resolve(m, ctx)
        return None if span is None else (span[0], span[1], mode)

    return prefix + anchor, handle


def _bound(m: re.Match[str], ctx: _Ctx) -> _Result | None:
    span = _resolve_anchor(m["a"], ctx)
    if span is None:
        return None
    keyword = " ".join(m["kw"].lower().split())
    if keyword in ("before", "prior to", "earlier than"):
        return None, span[0], "filter"
    if keyword in ("after", "later than"):
        return span[1], None, "filter"
    if keyword == "since":
        return span[0], None, "filter"
    return None, span[1], "filter"  # until / till / through / up to: inclusive of the day


def _between(m: re.Match[str], ctx: _Ctx) -> _Result | None:
    first, second = _resolve_anchor(m["a"], ctx), _resolve_anchor(m["b"], ctx)
    if first is None or second is None:
        return None
    # Inclusive of both ends, in whichever order they were written.
    return min(first[0], second[0]), max(first[1], second[1]), "filter"


def _rolling(m: re.Match[str], ctx: _Ctx) -> _Result | None:
    # Without a number ("the past week") the span is one unit, and vague.
    raw = m.groupdict().get("num")
    n, vague = _number(raw) if raw else (1, True)
    return _minus(ctx.now, n, m["unit"].lower()), None, "boost" if vague else "filter"


def _recently(m: re.Match[str], ctx: _Ctx) -> _Result | None:
    return ctx.now - timedelta(days=RECENT_DAYS), None, "boost"


def _other_day(m: re.Match[str], ctx: _Ctx) -> _Result | None:
    start, end = ctx.days(ctx.today - timedelta(days=7), 7)
    return start, end, "boost"


_RULE_SOURCES: tuple[tuple[str, _Handler], ...] = (
    (
        rf"(?P<kw>before|prior\s+to|earlier\s+than|after|later\s+than|since|until|till"
        rf"|through|up\s+to)\s+(?P<a>{_ANY_ANCHOR})",
        _bound,
    ),
    (
        rf"(?:between|from)\s+(?P<a>{_ANY_ANCHOR})\s+(?:and|to|until|till|through)"
        rf"\s+(?P<b>{_ANY_ANCHOR})",
        _between,
    ),
    _anchor_rule(r"(?:on\s+)?", _ISO, _span_iso, "filter"),
    _anchor_rule(r"(?:(?:in|during|of|from)\s+)?", _ISO_MONTH, _span_iso_month, "filter"),
    _anchor_rule(r"(?:(?P<on>on)\s+)?", _MONTH_DAY, _span_day_of_month, "filter", ("on", "year")),
    _anchor_rule(r"(?:(?P<on>on)\s+)?", _DAY_MONTH, _span_day_of_month, "filter", ("on", "year")),
    _anchor_rule(r"(?:(?:in|during|of|from)\s+)?", _MONTH_YEAR, _span_month_year, "filter"),
    _anchor_rule(
        r"(?:(?P<prep>in|during)\s+)?", _MONTH_ANCHOR, _span_month, "boost", ("prep", "mlast")
    ),
    _anchor_rule(r"(?:in|during|of|from)\s+", _YEAR, _span_year, "filter"),
    _anchor_rule(_LEAD, _DAY_WORD, _span_day_word, "boost"),
    _anchor_rule(_LEAD, _CALENDAR, _span_calendar, "boost"),
    _anchor_rule(_LEAD, _AGO, _span_ago, "boost"),
    _anchor_rule(_LEAD, _WEEKDAY_ANCHOR, _span_weekday, "boost", ("wprefix",)),
    (rf"{_ROLLING_LEAD}(?:the\s+)?(?:last|past|previous)\s+{_NUM}\s+{_UNIT}", _rolling),
    # "the past week", "in the last month": a rolling window, unlike calendar "last week".
    (rf"{_ROLLING_LEAD}(?:the\s+(?:last|past)|past)\s+{_UNIT_SINGULAR}", _rolling),
    (r"(?:in\s+)?recent\s+(?:days|weeks)|recently|lately|of\s+late|recent", _recently),
    (r"the\s+other\s+day", _other_day),
)

_RULES: tuple[tuple[re.Pattern[str], _Handler], ...] = tuple(
    (re.compile(rf"(?<!\w)(?:{source})(?!\w)", _FLAGS), handler)
    for source, handler in _RULE_SOURCES
)


def _slack(start: datetime | None, end: datetime | None, now: datetime) -> timedelta:
    width = abs((end or now) - (start or now))
    return max(width / 2, MIN_SLACK)


def parse_time_expression(query: str, now: datetime) -> TimeWindow | None:
    """The time window named in `query`, or None. When several expressions match, the
    longest wins (so "between May 1 and May 3" beats "May 1"), then the earliest."""
    if not isinstance(query, str):
        return None
    aware = now.tzinfo is not None and now.utcoffset() is not None
    local_now = now if aware else now.replace(tzinfo=UTC)
    try:
        now_utc = local_now.astimezone(UTC)
    except OverflowError:  # a `now` within a day of datetime.min/max
        return None
    ctx = _Ctx(local_now)
    best: tuple[tuple[int, int, int], re.Match[str], _Result] | None = None
    for index, (pattern, handler) in enumerate(_RULES):
        for m in pattern.finditer(query):
            key = (m.end() - m.start(), -m.start(), -index)
            if best is not None and key <= best[0]:
                continue
            try:
                result = handler(m, ctx)
                window = None if result is None else _to_utc(result)
            except (ValueError, OverflowError, KeyError):
                # Impossible dates ("2024-02-30") or arithmetic past year 1 / 9999.
                continue
            if window is not None:
                best = (key, m, window)
    if best is None:
        return None
    _, m, (start, end, mode) = best
    slack = _slack(start, end, now_utc) if mode == "boost" else timedelta(0)
    return TimeWindow(start, end, mode, m.group(0), slack)


def _to_utc(result: _Result) -> _Result | None:
    start, end, mode = result
    start = None if start is None else start.astimezone(UTC)
    end = None if end is None else end.astimezone(UTC)
    if start is not None and end is not None and start >= end:
        return None
    return start, end, mode


def strip_time_expression(query: str, window: TimeWindow) -> str:
    """`query` without the recognised span, with spacing and punctuation tidied."""
    if not window.matched:
        return query
    found = re.search(re.escape(window.matched), query, re.IGNORECASE)
    if found is None:
        return query
    left = query[: found.start()].rstrip()
    # "yesterday's notes" -> "notes", not "'s notes".
    right = re.sub(r"^['\u2019]s(?!\w)", "", query[found.end() :]).lstrip()
    if right[:1] in ("", "?", ".", "!", ",", ";", ":", ")"):
        joined = left.rstrip(",;:") + right
    else:
        joined = f"{left} {right}" if left else right
    return joined.strip().lstrip(",;: ")


def time_boost(event_time: datetime, window: TimeWindow) -> float:
    """1 inside the window; outside it 0 for a filter, and for a boost
    2 ** -(distance / slack) ** 2: smooth, 0.5 at one slack, ~0.06 at two."""
    t = _as_utc(event_time)
    if window.contains(t):
        return 1.0
    if window.mode == "filter" or window.slack <= timedelta(0):
        return 0.0
    if window.start is not None and t < window.start:
        distance = window.start - t
    elif window.end is not None:
        distance = t - window.end
    else:  # unreachable: outside an open-ended window means before its start
        return 0.0
    x = distance / window.slack
    return 2.0 ** -(x * x)
