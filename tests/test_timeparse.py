"""Tests for memory.timeparse."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memory.timeparse import (
    RECENT_DAYS,
    TimeWindow,
    parse_time_expression,
    strip_time_expression,
    time_boost,
)

# Wednesday, 12 June 2024, 15:30 UTC.
NOW = datetime(2024, 6, 12, 15, 30, tzinfo=UTC)


def d(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


CASES = [
    # query, start, end, mode, matched
    ("what did we do today", d(2024, 6, 12), d(2024, 6, 13), "boost", "today"),
    ("yesterday's standup", d(2024, 6, 11), d(2024, 6, 12), "boost", "yesterday"),
    ("decisions this week", d(2024, 6, 10), d(2024, 6, 17), "boost", "this week"),
    ("bugs from last week", d(2024, 6, 3), d(2024, 6, 10), "boost", "from last week"),
    ("this month", d(2024, 6, 1), d(2024, 7, 1), "boost", "this month"),
    ("Last Month", d(2024, 5, 1), d(2024, 6, 1), "boost", "Last Month"),
    ("this year", d(2024, 1, 1), d(2025, 1, 1), "boost", "this year"),
    ("last year", d(2023, 1, 1), d(2024, 1, 1), "boost", "last year"),
    ("3 days ago", d(2024, 6, 9), d(2024, 6, 10), "boost", "3 days ago"),
    ("two weeks ago", d(2024, 5, 27), d(2024, 6, 3), "boost", "two weeks ago"),
    ("a month ago", d(2024, 5, 1), d(2024, 6, 1), "boost", "a month ago"),
    ("a few days ago", d(2024, 6, 9), d(2024, 6, 10), "boost", "a few days ago"),
    ("in the last 7 days", d(2024, 6, 5, 15, 30), None, "filter", "in the last 7 days"),
    ("in the last two weeks", d(2024, 5, 29, 15, 30), None, "filter", "in the last two weeks"),
    ("over the past 3 months", d(2024, 3, 12, 15, 30), None, "filter", "over the past 3 months"),
    ("past 24 hours", d(2024, 6, 11, 15, 30), None, "filter", "past 24 hours"),
    ("in the last week", d(2024, 6, 5, 15, 30), None, "boost", "in the last week"),
    ("recently fixed bugs", d(2024, 5, 29, 15, 30), None, "boost", "recently"),
    ("what changed lately", d(2024, 5, 29, 15, 30), None, "boost", "lately"),
    ("in March", d(2024, 3, 1), d(2024, 4, 1), "boost", "in March"),
    ("in July", d(2023, 7, 1), d(2023, 8, 1), "boost", "in July"),  # not in the future
    ("in June", d(2024, 6, 1), d(2024, 7, 1), "boost", "in June"),  # the current month
    ("in March 2023", d(2023, 3, 1), d(2023, 4, 1), "filter", "in March 2023"),
    ("on 2024-05-01", d(2024, 5, 1), d(2024, 5, 2), "filter", "on 2024-05-01"),
    ("on May 1", d(2024, 5, 1), d(2024, 5, 2), "filter", "on May 1"),
    ("on July 4th", d(2023, 7, 4), d(2023, 7, 5), "filter", "on July 4th"),
    ("on 1 May 2024", d(2024, 5, 1), d(2024, 5, 2), "filter", "on 1 May 2024"),
    ("on the 3rd of May", d(2024, 5, 3), d(2024, 5, 4), "filter", "on the 3rd of May"),
    ("before 2024-05-01", None, d(2024, 5, 1), "filter", "before 2024-05-01"),
    ("after 2024-05-01", d(2024, 5, 2), None, "filter", "after 2024-05-01"),
    ("since 2024-05-01", d(2024, 5, 1), None, "filter", "since 2024-05-01"),
    ("until 2024-05-01", None, d(2024, 5, 2), "filter", "until 2024-05-01"),
    ("since last week", d(2024, 6, 3), None, "filter", "since last week"),
    ("before March 2024", None, d(2024, 3, 1), "filter", "before March 2024"),
    ("after 2023", d(2024, 1, 1), None, "filter", "after 2023"),
    (
        "between 2024-05-01 and 2024-05-10",
        d(2024, 5, 1),
        d(2024, 5, 11),
        "filter",
        "between 2024-05-01 and 2024-05-10",
    ),
    (
        "between May 10 and May 1",
        d(2024, 5, 1),
        d(2024, 5, 11),
        "filter",
        "between May 10 and May 1",
    ),
    ("from March to May", d(2024, 3, 1), d(2024, 6, 1), "filter", "from March to May"),
    ("in 2023", d(2023, 1, 1), d(2024, 1, 1), "filter", "in 2023"),
    ("last Friday", d(2024, 6, 7), d(2024, 6, 8), "boost", "last Friday"),
    ("last Wednesday", d(2024, 6, 5), d(2024, 6, 6), "boost", "last Wednesday"),
    ("on Monday", d(2024, 6, 10), d(2024, 6, 11), "boost", "on Monday"),
    ("on Wednesday", d(2024, 6, 12), d(2024, 6, 13), "boost", "on Wednesday"),
    ("the other day", d(2024, 6, 5), d(2024, 6, 12), "boost", "the other day"),
    ("3 hours ago", d(2024, 6, 12, 11, 30), d(2024, 6, 12, 13, 30), "boost", "3 hours ago"),
]


@pytest.mark.parametrize(("query", "start", "end", "mode", "matched"), CASES)
def test_parse(
    query: str, start: datetime | None, end: datetime | None, mode: str, matched: str
) -> None:
    window = parse_time_expression(query, NOW)
    assert window is not None
    assert (window.start, window.end, window.mode, window.matched) == (start, end, mode, matched)


@pytest.mark.parametrize(
    "query",
    [
        "how do we cache embeddings",
        "errors in may break the build",  # modal "may"
        "step 1 may fail on CI",
        "buffer of size in 2048 bytes",
        "ignore the last 3 commits",
        "the May 1 thing",  # a yearless date needs "on"
        "on 2024-02-30",  # no such day
        "",
    ],
)
def test_no_time_expression(query: str) -> None:
    assert parse_time_expression(query, NOW) is None


def test_feb_29_without_year_is_the_latest_leap_day() -> None:
    now = datetime(2025, 3, 1, tzinfo=UTC)
    window = parse_time_expression("on Feb 29", now)
    assert window is not None and window.start == d(2024, 2, 29)


def test_longest_expression_wins() -> None:
    window = parse_time_expression("since May 1, 2023 we use ruff", NOW)
    assert window is not None and window.matched == "since May 1, 2023"


def test_calendar_follows_the_time_zone_of_now() -> None:
    local_now = NOW.astimezone(timezone(timedelta(hours=2)))  # 17:30 local
    window = parse_time_expression("today", local_now)
    assert window is not None
    assert window.start == d(2024, 6, 11, 22)  # local midnight, in UTC
    assert window.start.tzinfo is UTC


def test_naive_now_is_utc() -> None:
    window = parse_time_expression("yesterday", NOW.replace(tzinfo=None))
    assert window is not None and window.start == d(2024, 6, 11)


def test_recently_looks_back_recent_days() -> None:
    window = parse_time_expression("recently", NOW)
    assert window is not None and window.start == NOW - timedelta(days=RECENT_DAYS)


@pytest.mark.parametrize(
    ("query", "stripped"),
    [
        ("what did we decide about caching last week?", "what did we decide about caching?"),
        ("Yesterday, what did we decide?", "what did we decide?"),
        ("yesterday's standup notes", "standup notes"),
        ("bugs since 2024-05-01 in the parser", "bugs in the parser"),
        ("today", ""),
    ],
)
def test_strip(query: str, stripped: str) -> None:
    window = parse_time_expression(query, NOW)
    assert window is not None
    assert strip_time_expression(query, window) == stripped


def test_strip_leaves_query_alone_when_span_absent() -> None:
    window = TimeWindow(None, None, "boost", "last week")
    assert strip_time_expression("no time here", window) == "no time here"


def test_time_boost_filter_is_all_or_nothing() -> None:
    window = parse_time_expression("on 2024-05-01", NOW)
    assert window is not None
    assert time_boost(d(2024, 5, 1, 12), window) == 1.0
    assert time_boost(d(2024, 5, 2, 0, 1), window) == 0.0


def test_time_boost_decays_smoothly_outside_a_boost_window() -> None:
    window = parse_time_expression("last week", NOW)  # 2024-06-03 .. 2024-06-10
    assert window is not None and window.slack > timedelta(0)
    assert time_boost(d(2024, 6, 5), window) == 1.0
    assert time_boost(window.end + window.slack, window) == pytest.approx(0.5)
    assert time_boost(window.start - window.slack, window) == pytest.approx(0.5)
    near = time_boost(d(2024, 6, 11), window)
    far = time_boost(d(2024, 6, 20), window)
    assert 1.0 > near > far > 0.0
    # Naive event times are UTC.
    assert time_boost(datetime(2024, 6, 5), window) == 1.0


def test_time_boost_open_window() -> None:
    window = parse_time_expression("recently", NOW)
    assert window is not None
    assert time_boost(NOW, window) == 1.0
    assert 0.0 < time_boost(NOW - timedelta(days=30), window) < 0.5


# --- properties ---------------------------------------------------------------------------

VOCAB = [
    "today", "yesterday", "this", "last", "past", "the", "in", "on", "since", "before", "after",
    "until", "between", "and", "from", "to", "ago", "a", "few", "couple", "of", "week", "weeks",
    "month", "days", "year", "hours", "March", "may", "Feb", "29", "31", "1st", "2024", "2023",
    "9999", "0", "2024-05-01", "2024-02-30", "2024-13", "Friday", "monday", "recently", "lately",
    "bugs", "?", ",", "'s", "other", "day", "1000",
]  # fmt: skip

queries = st.one_of(
    st.text(max_size=80),
    st.lists(st.sampled_from(VOCAB), max_size=8).map(" ".join),
)
nows = st.builds(
    lambda moment, minutes: moment.replace(tzinfo=timezone(timedelta(minutes=minutes))),
    st.datetimes(min_value=datetime(1, 1, 3), max_value=datetime(9999, 12, 29)),
    st.integers(min_value=-23 * 60, max_value=23 * 60),
)


@settings(max_examples=300, deadline=None)
@given(queries, nows)
def test_never_raises_and_windows_are_well_formed(query: str, now: datetime) -> None:
    window = parse_time_expression(query, now)
    if window is None:
        return
    assert window.matched and window.matched in query
    assert window.start is not None or window.end is not None
    for bound in (window.start, window.end):
        assert bound is None or bound.tzinfo is UTC
    if window.start is not None and window.end is not None:
        assert window.start < window.end
    assert (window.slack > timedelta(0)) == (window.mode == "boost")
    assert isinstance(strip_time_expression(query, window), str)
    at = window.start or window.end
    assert at is not None
    assert 0.0 <= time_boost(at, window) <= 1.0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(VOCAB), max_size=8).map(" ".join), st.integers(-400, 400))
def test_time_boost_bounded_and_one_inside(query: str, offset_days: int) -> None:
    window = parse_time_expression(query, NOW)
    if window is None:
        return
    moment = NOW + timedelta(days=offset_days)
    boost = time_boost(moment, window)
    assert 0.0 <= boost <= 1.0
    if window.contains(moment):
        assert boost == 1.0
    elif window.mode == "filter":
        assert boost == 0.0
