"""Query parsing, tier choice and cursors: pure functions, no database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from traksense.core.errors import ApiError
from traksense.points.resolution import (
    Cursor,
    Plan,
    PointsQuery,
    bucket_count,
    calendar_plan,
    decode_cursor,
    encode_cursor,
    parse_query,
    plan,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
RETENTION = {"raw": 14, "1m": 365, "5m": 730, "1h": 1825}
DEVICE = str(uuid.uuid4())
POINT = str(uuid.uuid4())


def params(**overrides: str) -> dict[str, list[str]]:
    base = {
        "device_id": DEVICE,
        "point_id": POINT,
        "start": "2026-06-01T00:00:00Z",
        "end": "2026-06-01T12:00:00Z",
    }
    base.update(overrides)
    return {k: [v] for k, v in base.items()}


def query(start: datetime, end: datetime | None = None, **extra: str) -> PointsQuery:
    return parse_query(params(start=start.isoformat(), end=(end or NOW).isoformat(), **extra))


def rejects(raw: dict[str, list[str]], accept: str = "") -> str:
    with pytest.raises(ApiError) as info:
        parse_query(raw, accept)
    assert info.value.status == 400
    return info.value.message


def test_it_parses_a_minimal_query_with_defaults() -> None:
    q = parse_query(params())
    assert q.agg == "raw"
    assert q.limit == 100_000
    assert q.max_points == 1_000
    assert q.format == "json"
    assert q.materialized_only is False
    assert q.start == datetime(2026, 6, 1, tzinfo=UTC)


def test_it_converts_offsets_to_utc() -> None:
    q = parse_query(params(start="2026-06-01T02:00:00+02:00"))
    assert q.start == datetime(2026, 6, 1, tzinfo=UTC)


def test_it_reads_a_plus_sent_unencoded_in_a_url_as_a_plus() -> None:
    q = parse_query(params(start="2026-06-01T02:00:00 02:00", end="2026-06-01T12:00:00.5 00:00"))
    assert q.start == datetime(2026, 6, 1, tzinfo=UTC)
    assert q.end == datetime(2026, 6, 1, 12, 0, 0, 500000, tzinfo=UTC)
    assert "offset" in rejects(params(start="2026-06-01 02:00:00"))


@pytest.mark.parametrize("name", ["device_id", "point_id", "start", "end"])
def test_it_requires_each_of_the_four_parameters(name: str) -> None:
    raw = params()
    del raw[name]
    assert name in rejects(raw)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("device_id", "not-a-uuid"),
        ("point_id", "123"),
        ("start", "2026-06-01T00:00:00"),
        ("start", "2026-06-01"),
        ("end", "yesterday"),
        ("agg", "2m"),
        ("agg", "RAW"),
        ("limit", "0"),
        ("limit", "-5"),
        ("limit", "1.5"),
        ("limit", "ten"),
        ("limit", "100001"),
        ("limit", "1_000"),
        ("max_points", "0"),
        ("format", "xml"),
        ("materialized_only", "maybe"),
        ("cursor", ""),
    ],
)
def test_it_rejects_a_bad_value(name: str, value: str) -> None:
    assert name in rejects(params(**{name: value}))


def test_it_rejects_a_timestamp_without_offset_saying_so() -> None:
    assert "offset" in rejects(params(end="2026-06-01T12:00:00"))


def test_it_rejects_start_equal_to_end_and_start_after_end() -> None:
    rejects(params(start="2026-06-01T00:00:00Z", end="2026-06-01T00:00:00Z"))
    rejects(params(start="2026-06-02T00:00:00Z", end="2026-06-01T00:00:00Z"))


def test_it_rejects_unknown_parameters_naming_them() -> None:
    assert "limt" in rejects(params(limt="10"))


def test_it_rejects_a_parameter_given_twice() -> None:
    raw = params()
    raw["agg"] = ["1m", "1h"]
    assert "agg" in rejects(raw)


def test_it_accepts_the_largest_limit() -> None:
    assert parse_query(params(limit="100000")).limit == 100_000


def test_format_wins_over_accept_and_accept_asks_for_csv() -> None:
    assert parse_query(params(), "text/csv").format == "csv"
    assert parse_query(params(), "application/json, text/csv;q=0.5").format == "csv"
    assert parse_query(params(format="json"), "text/csv").format == "json"
    assert parse_query(params(), "*/*").format == "json"


def test_a_recent_raw_query_is_answered_from_raw() -> None:
    assert plan(query(NOW - timedelta(days=13)), NOW, RETENTION).tier == "raw"


def test_a_raw_query_30_days_back_degrades_to_1m_with_a_reason() -> None:
    chosen = plan(query(NOW - timedelta(days=30)), NOW, RETENTION)
    assert (chosen.tier, chosen.degraded_from, chosen.degraded_to) == ("1m", "raw", "1m")
    assert chosen.reason is not None
    assert "raw data is kept 14 days" in chosen.reason
    assert "30 days ago" in chosen.reason


def test_degradation_skips_every_tier_that_does_not_cover_start() -> None:
    chosen = plan(query(NOW - timedelta(days=400)), NOW, RETENTION)
    assert (chosen.tier, chosen.degraded_from) == ("5m", "raw")
    chosen = plan(query(NOW - timedelta(days=800), agg="1m"), NOW, RETENTION)
    assert (chosen.tier, chosen.degraded_from) == ("1h", "1m")


def test_a_start_beyond_every_tier_answers_from_the_coarsest_and_says_so() -> None:
    chosen = plan(query(NOW - timedelta(days=2000)), NOW, RETENTION)
    assert chosen.tier == "1h"
    assert chosen.reason is not None and "no tier reaches" in chosen.reason
    # The coarsest tier asked for itself has nothing to degrade to.
    assert not plan(query(NOW - timedelta(days=2000), agg="1h"), NOW, RETENTION).degraded


def test_a_zero_retention_keeps_a_tier_forever() -> None:
    forever = {**RETENTION, "raw": 0}
    assert plan(query(NOW - timedelta(days=3000)), NOW, forever).tier == "raw"


def test_auto_picks_the_finest_tier_that_fits_max_points() -> None:
    day = timedelta(days=1)
    assert plan(query(NOW - day / 2, agg="auto"), NOW, RETENTION).tier == "1m"
    assert plan(query(NOW - 3 * day, agg="auto"), NOW, RETENTION).tier == "5m"
    assert plan(query(NOW - 30 * day, agg="auto"), NOW, RETENTION).tier == "1h"
    # Beyond what even 1h fits, 1h anyway (paging cuts it).
    assert plan(query(NOW - 300 * day, agg="auto"), NOW, RETENTION).tier == "1h"
    # max_points moves the choice.
    small = query(NOW - 3 * day, agg="auto", max_points="100")
    assert plan(small, NOW, RETENTION).tier == "1h"


def test_auto_never_picks_a_tier_that_no_longer_covers_start() -> None:
    q = query(NOW - timedelta(days=400), NOW - timedelta(days=400) + timedelta(hours=1), agg="auto")
    chosen = plan(q, NOW, RETENTION)
    assert chosen.tier == "5m"
    assert not chosen.degraded


def test_bucket_count_counts_touched_aligned_buckets() -> None:
    t = datetime(2026, 1, 1, tzinfo=UTC)
    assert bucket_count("1m", t, t + timedelta(days=30)) == 43_200
    assert bucket_count("1h", t, t + timedelta(days=30)) == 720
    assert bucket_count("1h", t + timedelta(minutes=30), t + timedelta(hours=1, minutes=1)) == 2


@pytest.mark.parametrize("agg", ["1m", "5m", "1h"])
def test_a_rollup_on_a_boolean_or_text_point_reads_its_tier(agg: str) -> None:
    # (A 400 until issue 19: the seed's rule, from TimescaleDB's numeric-only aggregates.)
    assert plan(query(NOW - timedelta(hours=1), agg=agg), NOW, RETENTION) == Plan(agg)


def test_boolean_and_text_points_route_and_degrade_like_numeric_ones() -> None:
    assert plan(query(NOW - timedelta(days=1), agg="auto"), NOW, RETENTION).tier == "5m"
    old = plan(query(NOW - timedelta(days=30)), NOW, RETENTION)
    assert (old.tier, old.degraded_from) == ("1m", "raw")


def test_calendar_buckets_come_from_the_coarsest_aligned_tier_that_covers_start() -> None:
    q = query(NOW - timedelta(days=3), agg="1d")
    assert calendar_plan(q, "UTC", 3600, NOW, RETENTION) == Plan("1d", source="1h", tz="UTC")
    kolkata = calendar_plan(q, "Asia/Kolkata", 300, NOW, RETENTION)
    assert (kolkata.source, kolkata.degraded) == ("5m", False)
    old = calendar_plan(query(NOW - timedelta(days=800), agg="1d"), "X/Y", 300, NOW, RETENTION)
    assert (old.source, old.degraded_from, old.degraded_to) == ("1h", "5m", "1h")
    odd = calendar_plan(q, "X/Y", 0, NOW, RETENTION)
    assert (odd.source, odd.degraded_from) == ("1h", "1m")


def test_a_pinned_tier_keeps_later_pages_on_the_first_pages_tier() -> None:
    # Start was 13 days 23 hours ago at page one; the clock moved past 14 days since.
    q = query(NOW - timedelta(days=14, hours=1))
    assert plan(q, NOW, RETENTION).tier == "1m"
    assert plan(q, NOW, RETENTION, pinned_tier="raw").tier == "raw"
    pinned = plan(q, NOW, RETENTION, pinned_tier="1m")
    assert (pinned.tier, pinned.degraded_from) == ("1m", "raw")


def test_a_cursor_round_trips() -> None:
    q = parse_query(params())
    at = datetime(2026, 6, 1, 3, 4, 5, 678901, tzinfo=UTC)
    token = encode_cursor(Cursor("1m", at), q, "secret")
    assert decode_cursor(token, q, "secret") == Cursor("1m", at)


def test_a_garbled_forged_or_foreign_cursor_is_a_400() -> None:
    q = parse_query(params())
    token = encode_cursor(Cursor("raw", NOW), q, "secret")
    other_series = parse_query(params(point_id=str(uuid.uuid4())))
    other_agg = parse_query(params(agg="1h"))
    flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    for bad, against, secret in [
        ("!!!", q, "secret"),
        ("abc", q, "secret"),
        (token[:-3], q, "secret"),
        (flipped, q, "secret"),
        (token, q, "another secret"),
        (token, other_series, "secret"),
        (token, other_agg, "secret"),
    ]:
        with pytest.raises(ApiError) as info:
            decode_cursor(bad, against, secret)
        assert info.value.status == 400
