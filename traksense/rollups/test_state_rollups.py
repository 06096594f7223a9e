"""State rollups of boolean and text points (issue 19): every tier, real-time and refreshed,
against a straightforward recompute from the samples in Python."""

from __future__ import annotations

import csv
import io
import random
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from django.db import connection
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from traksense.conftest import TenantFixture
from traksense.db.context import tenant_context
from traksense.points.test_read import get, ingest, series_id_of, streamed, window
from traksense.rollups.compression import compress_tier
from traksense.rollups.jobs import db_now
from traksense.rollups.refresh import refresh
from traksense.rollups.retention import expire

WIDTH = {"1m": 60, "5m": 300, "1h": 3600}
GAP = timedelta(minutes=10)  # STATE_MAX_GAP_SECONDS' default
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Sample = tuple[datetime, Any]


def floor(t: datetime, width: int) -> datetime:
    return EPOCH + timedelta(seconds=(t - EPOCH).total_seconds() // width * width)


def recompute(
    samples: Sequence[Sample], tier: str, lo: datetime, hi: datetime
) -> list[dict[str, Any]]:
    """The state rows of the buckets starting in [lo, hi), from the definition: a value holds
    from its sample until the next sample, at most GAP; a bucket has a row when it holds a
    sample or a hold reaches into it; changes count against the previous sample."""
    width = WIDTH[tier]
    ordered = sorted(samples, key=lambda s: s[0])
    rows: dict[datetime, dict[str, Any]] = {}

    def row(b: datetime) -> dict[str, Any]:
        return rows.setdefault(
            b, {"ts": b, "n": 0, "first": None, "last": None, "changes": 0, "time_in": {}}
        )

    for i, (t, v) in enumerate(ordered):
        r = row(floor(t, width))
        r["n"] += 1
        if r["first"] is None:
            r["first"] = v
        r["last"] = v
        if i and ordered[i - 1][1] != v:
            r["changes"] += 1
        end = min(ordered[i + 1][0] if i + 1 < len(ordered) else t + GAP, t + GAP)
        c = floor(t, width)
        while c < end:
            part = (min(end, c + timedelta(seconds=width)) - max(t, c)).total_seconds()
            key = str(v).lower() if isinstance(v, bool) else v
            held = row(c)["time_in"]
            held[key] = held.get(key, 0.0) + part
            c += timedelta(seconds=width)
    return [rows[b] for b in sorted(rows) if lo <= b < hi]


def assert_rows(actual: list[dict[str, Any]], wanted: list[dict[str, Any]], kind: str) -> None:
    assert [r["ts"] for r in actual] == [w["ts"].isoformat() for w in wanted]
    for got, want in zip(actual, wanted, strict=True):
        shape = (got["n"], got["first"], got["last"], got["changes"])
        assert shape == (want["n"], want["first"], want["last"], want["changes"]), got["ts"]
        if kind == "boolean":
            assert got["true_s"] == pytest.approx(want["time_in"].get("true", 0.0), abs=1e-6)
        else:
            assert got["time_in"] == pytest.approx(want["time_in"], abs=1e-6), got["ts"]


def states(tenant: TenantFixture, **params: Any) -> list[dict[str, Any]]:
    response = get(tenant, **params)
    assert response.status_code == 200, response.content
    body = orjson.loads(response.content)
    assert body["agg"] == params["agg"]
    data: list[dict[str, Any]] = body["data"]
    return data


def irregular_states(lo: datetime, hi: datetime, values: Sequence[Any], seed: int) -> list[Sample]:
    """Samples at irregular instants: mostly seconds to minutes apart, sometimes a silence
    longer than the gap; one sample exactly at lo (a bucket boundary)."""
    rng = random.Random(seed)
    samples, t = [], lo
    while t < hi:
        samples.append((t, rng.choice(values)))
        pause = rng.choice([rng.randint(1, 90), rng.randint(60, 400), rng.randint(700, 1500)])
        t += timedelta(seconds=pause, microseconds=rng.choice([0, 250_000]))
    return samples


def refresh_all_tiers(lo: datetime, hi: datetime) -> None:
    for tier in ("1m", "5m", "1h"):
        refresh(tier, lo - timedelta(hours=2), hi + timedelta(hours=2))


def start_hour() -> datetime:
    return (datetime.now(UTC) - timedelta(days=1)).replace(minute=0, second=0, microsecond=0)


KINDS = [("boolean", [True, False]), ("text", ["heat", "cool", "off", "fan"])]


@pytest.mark.parametrize("tier", ["1m", "5m", "1h"])
@pytest.mark.parametrize(("kind", "values"), KINDS, ids=[k for k, _ in KINDS])
@pytest.mark.parametrize("refreshed", [False, True], ids=["real-time", "refreshed"])
def test_state_rows_equal_a_recompute_from_the_samples(
    tenant_a: TenantFixture, tier: str, kind: str, values: list[Any], refreshed: bool
) -> None:
    lo = start_hour()
    hi = lo + timedelta(hours=4)
    samples = irregular_states(lo, hi, values, seed=len(tier) + len(kind))
    device, point = uuid.uuid4(), uuid.uuid4()
    ingest(tenant_a, device, point, samples)
    if refreshed:
        refresh_all_tiers(lo, hi)
    # The window starts and ends inside the data: holds and changes reach across its bounds.
    w_lo, w_hi = lo + timedelta(minutes=25), hi - timedelta(minutes=35)
    got = states(tenant_a, device_id=device, point_id=point, agg=tier, **window(w_lo, w_hi))
    wanted = recompute(samples, tier, w_lo, w_hi)
    assert any(w["n"] == 0 for w in wanted) or tier == "1h"  # empty buckets a hold reaches
    assert_rows(got, wanted, kind)


def test_a_late_sample_changes_the_buckets_after_it(tenant_a: TenantFixture) -> None:
    # On from lo, reported every 2 minutes; a late "off" sample 3 minutes in ends the hold of
    # the "on" before it and holds itself into the following buckets.
    lo = start_hour()
    samples: list[Sample] = [(lo + timedelta(minutes=2 * i), True) for i in range(60)]
    device, point = uuid.uuid4(), uuid.uuid4()
    ingest(tenant_a, device, point, samples)
    refresh_all_tiers(lo, lo + timedelta(hours=2))
    late = [(lo + timedelta(minutes=3, seconds=30), False)]
    ingest(tenant_a, device, point, late)
    refresh_all_tiers(lo, lo + timedelta(hours=2))
    hi = lo + timedelta(hours=2)
    for tier in ("1m", "5m", "1h"):
        got = states(tenant_a, device_id=device, point_id=point, agg=tier, **window(lo, hi))
        assert_rows(got, recompute(samples + late, tier, lo, hi), "boolean")
    one_minute = states(tenant_a, device_id=device, point_id=point, agg="1m", **window(lo, hi))
    assert one_minute[3]["true_s"] == 30 and one_minute[3]["changes"] == 1
    assert one_minute[4]["changes"] == 1  # back on at 4:00


def test_run_time_holds_through_empty_buckets_and_stops_at_the_gap(
    tenant_a: TenantFixture,
) -> None:
    # A chiller reported on at 10:00:30 and nothing more for an hour: on until 10:10:30
    # (the gap), then unknown. The 1m buckets 10:01..10:10 have no sample but run time.
    lo = start_hour()
    device, point = uuid.uuid4(), uuid.uuid4()
    ingest(tenant_a, device, point, [(lo + timedelta(seconds=30), True)])
    ingest(tenant_a, device, point, [(lo + timedelta(hours=1), False)])
    refresh_all_tiers(lo, lo + timedelta(hours=2))
    got = states(
        tenant_a,
        device_id=device,
        point_id=point,
        agg="1m",
        **window(lo, lo + timedelta(minutes=30)),
    )
    assert [r["true_s"] for r in got] == [30.0] + [60.0] * 9 + [30.0]
    assert [r["n"] for r in got] == [1] + [0] * 10
    assert got[1]["first"] is None and got[1]["last"] is None
    hour = states(
        tenant_a, device_id=device, point_id=point, agg="1h", **window(lo, lo + timedelta(hours=2))
    )
    assert [(r["true_s"], r["n"], r["changes"]) for r in hour] == [(600.0, 1, 0), (0.0, 1, 1)]


def test_text_keeps_sixteen_values_and_sums_the_rest_as_other(tenant_a: TenantFixture) -> None:
    # Twenty modes in one hour, mode k held 15 (k + 1) seconds; the last holds for the gap.
    lo = start_hour()
    samples = [(lo + timedelta(seconds=15 * k * (k + 1) // 2), f"mode{k:02d}") for k in range(20)]
    device, point = uuid.uuid4(), uuid.uuid4()
    ingest(tenant_a, device, point, samples)
    refresh_all_tiers(lo, lo + timedelta(hours=2))
    (row,) = states(
        tenant_a, device_id=device, point_id=point, agg="1h", **window(lo, lo + timedelta(hours=1))
    )
    full = recompute(samples, "1h", lo, lo + timedelta(hours=1))[0]["time_in"]
    ranked = sorted(full, key=lambda k: (-full[k], k))
    wanted = {k: full[k] for k in ranked[:16]}
    wanted["other"] = sum(full[k] for k in ranked[16:])
    assert row["time_in"] == pytest.approx(wanted)
    assert wanted["other"] == 15 + 30 + 45 + 60
    assert row["changes"] == 19


def test_materialized_only_answers_refreshed_buckets_only(tenant_a: TenantFixture) -> None:
    lo = start_hour()
    device, point = uuid.uuid4(), uuid.uuid4()
    samples = irregular_states(lo, lo + timedelta(hours=1), [True, False], seed=3)
    ingest(tenant_a, device, point, samples)
    ask: dict[str, Any] = {
        "device_id": device,
        "point_id": point,
        "agg": "5m",
        **window(lo, lo + timedelta(hours=1)),
    }
    # (Real-time first: under the test's one transaction, materialized_only outlives its read.)
    real_time = states(tenant_a, **ask)
    assert real_time
    assert states(tenant_a, materialized_only="true", **ask) == []
    refresh_all_tiers(lo, lo + timedelta(hours=1))
    assert states(tenant_a, materialized_only="true", **ask) == real_time


def test_states_as_csv(tenant_a: TenantFixture) -> None:
    lo = start_hour()
    device, point = uuid.uuid4(), uuid.uuid4()
    ingest(tenant_a, device, point, [(lo, "heat"), (lo + timedelta(seconds=90), 'co"ol')])
    response = get(
        tenant_a,
        device_id=device,
        point_id=point,
        agg="1m",
        format="csv",
        **window(lo, lo + timedelta(minutes=3)),
    )
    assert response.status_code == 200
    lines = list(csv.reader(io.StringIO(streamed(response))))
    assert lines[0] == ["ts", "first", "last", "changes", "n", "time_in"]
    assert lines[1][1:5] == ["heat", "heat", "0", "1"]
    assert orjson.loads(lines[1][5]) == {"heat": 60.0}
    assert lines[2][1:5] == ['co"ol', 'co"ol', "1", "1"]
    assert orjson.loads(lines[2][5]) == {"heat": 30.0, 'co"ol': 30.0}


def test_another_tenants_states_stay_closed(
    tenant_a: TenantFixture, tenant_b: TenantFixture
) -> None:
    lo = start_hour()
    device, point = uuid.uuid4(), uuid.uuid4()
    ingest(tenant_a, device, point, irregular_states(lo, lo + timedelta(hours=1), [True, False], 5))
    refresh_all_tiers(lo, lo + timedelta(hours=1))
    ask: dict[str, Any] = {
        "device_id": device,
        "point_id": point,
        "agg": "1m",
        **window(lo, lo + timedelta(hours=1)),
    }
    assert states(tenant_a, **ask)
    assert get(tenant_b, **ask).status_code == 404
    series_id = series_id_of(tenant_a, device, point)
    with tenant_context(tenant_b.id) as cur:
        for tier in ("1m", "5m", "1h"):
            cur.execute(
                f"SELECT count(*) FROM ts_read_state_{tier}(%s, %s, %s, 1000)",
                [series_id, lo, lo + timedelta(hours=1)],
            )
            assert cur.fetchone() == (0,), tier
    # The tables themselves are closed to the runtime role.
    with tenant_context(tenant_b.id) as cur:
        cur.execute("SELECT has_table_privilege('ts_state_1m', 'SELECT')")
        assert cur.fetchone() == (False,)


def _state_rows(tier: str) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM ts_state_{tier} ORDER BY series_id, bucket")
        return list(cursor.fetchall())


def test_state_rows_outlive_their_expired_source_and_expire_with_their_tier(
    tenant_a: TenantFixture,
) -> None:
    now = db_now()
    device = uuid.uuid4()
    old_raw = (now - timedelta(days=16)).replace(minute=0, second=0, microsecond=0)
    old_1m = (now - timedelta(days=400)).replace(minute=0, second=0, microsecond=0)
    for start in (old_raw, old_1m):
        samples = irregular_states(start, start + timedelta(hours=1), [True, False], seed=8)
        ingest(tenant_a, device, uuid.uuid4(), samples)
    for tier in ("1m", "5m", "1h"):
        refresh(tier, None, now)
    before = {tier: _state_rows(tier) for tier in ("1m", "5m", "1h")}
    assert all(before.values())

    assert expire("raw", now=now).dropped
    for tier in ("1m", "5m", "1h"):
        refresh(tier, None, now)
        assert _state_rows(tier) == before[tier], tier

    assert expire("1m", now=now).dropped
    cutoff = now - timedelta(days=365)
    assert _state_rows("1m") == [r for r in before["1m"] if r[1] >= cutoff]
    assert len(_state_rows("1m")) < len(before["1m"])
    for tier in ("5m", "1h"):
        refresh(tier, None, now)
        assert _state_rows(tier) == before[tier], tier


STATE_OPERATIONS = st.lists(
    st.one_of(
        st.tuples(
            st.just("write"),
            st.integers(0, 3 * 60 - 1),  # minute
            st.sampled_from([0, 20, 40]),  # second: overwrites and samples between the others
            st.integers(0, 3),  # a value index
        ),
        st.tuples(st.just("delete"), st.integers(0, 10_000)),
        st.tuples(st.just("refresh"), st.sampled_from([("1m",), ("1m", "5m"), ("5m", "1h")])),
        st.tuples(st.just("read"), st.sampled_from(["1m", "5m", "1h"]), st.integers(0, 3)),
    ),
    min_size=4,
    max_size=12,
)


@hypothesis_settings(
    max_examples=15,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(operations=STATE_OPERATIONS, kind=st.sampled_from(KINDS))
def test_every_state_read_equals_a_recompute_whatever_was_refreshed(
    tenant_a: TenantFixture, operations: list[Any], kind: tuple[str, list[Any]]
) -> None:
    # Read-your-writes for state rows (69_state_fresh.sql): late writes, overwrites and owner
    # deletes into buckets every tier has materialized are in the very next read of every tier,
    # before any refresh, and after any partial refresh.
    name, values = kind
    lo = start_hour()
    hi = lo + timedelta(hours=3)
    device, point = uuid.uuid4(), uuid.uuid4()
    samples = dict(
        (lo + timedelta(minutes=3 * i, seconds=10), values[i % 3 % len(values)]) for i in range(60)
    )
    ingest(tenant_a, device, point, sorted(samples.items()))
    refresh_all_tiers(lo, hi)
    series = series_id_of(tenant_a, device, point)
    for op in operations:
        if op[0] == "write":
            t = lo + timedelta(minutes=op[1], seconds=op[2])
            ingest(tenant_a, device, point, [(t, values[op[3] % len(values)])])
            samples[t] = values[op[3] % len(values)]
        elif op[0] == "delete" and samples:
            t = sorted(samples)[op[1] % len(samples)]
            with connection.cursor() as cursor:
                cursor.execute(
                    "DELETE FROM ts_measure WHERE series_id = %s AND ts = %s", [series, t]
                )
            del samples[t]
        elif op[0] == "refresh":
            for tier in op[1]:
                refresh(tier, lo - timedelta(hours=2), hi + timedelta(hours=2))
        elif op[0] == "read":
            tier = op[1]
            w_lo = floor(lo + timedelta(minutes=[0, 7, 61, 95][op[2]]), WIDTH[tier])
            w_hi = hi - timedelta(minutes=[0, 3, 0, 50][op[2]])
            got = states(tenant_a, device_id=device, point_id=point, agg=tier, **window(w_lo, w_hi))
            assert_rows(got, recompute(sorted(samples.items()), tier, w_lo, w_hi), name)


def test_a_late_state_sample_is_read_before_the_refresh(tenant_a: TenantFixture) -> None:
    # The example the property test generalises, with the materialized_only answer beside it:
    # the stored rows stay as they were until the refresh.
    lo = start_hour()
    hi = lo + timedelta(hours=2)
    samples: list[Sample] = [(lo + timedelta(minutes=2 * i), True) for i in range(60)]
    device, point = uuid.uuid4(), uuid.uuid4()
    ingest(tenant_a, device, point, samples)
    refresh_all_tiers(lo, hi)
    stored = {
        t: states(tenant_a, device_id=device, point_id=point, agg=t, **window(lo, hi))
        for t in WIDTH
    }
    late = [(lo + timedelta(minutes=3, seconds=30), False), (lo + timedelta(minutes=61), False)]
    ingest(tenant_a, device, point, late)
    for tier in WIDTH:
        got = states(tenant_a, device_id=device, point_id=point, agg=tier, **window(lo, hi))
        assert got != stored[tier]
        assert_rows(got, recompute(samples + late, tier, lo, hi), "boolean")
    for tier in WIDTH:  # (last: materialized_only outlives its request in the test's transaction)
        kept = states(
            tenant_a,
            device_id=device,
            point_id=point,
            agg=tier,
            materialized_only="true",
            **window(lo, hi),
        )
        assert kept == stored[tier]


@pytest.mark.parametrize(("kind", "values"), KINDS, ids=[k for k, _ in KINDS])
def test_a_backfilled_history_before_the_first_stored_row_is_read_before_the_refresh(
    tenant_a: TenantFixture, kind: str, values: list[Any]
) -> None:
    # A gateway uploads its buffered history, hours before the series' first stored row: the
    # row before a later window (its last value: the window's first change; the rows after it)
    # comes from that history before the refresh has stored it, however far back it is.
    lo = start_hour()
    hi = lo + timedelta(hours=6)
    stream: list[Sample] = [(lo + timedelta(hours=4, minutes=2 * i), values[0]) for i in range(60)]
    device, point = uuid.uuid4(), uuid.uuid4()
    ingest(tenant_a, device, point, stream)
    refresh_all_tiers(lo, hi)
    history: list[Sample] = [(lo + timedelta(minutes=3 * i), values[1]) for i in range(20)]
    ingest(tenant_a, device, point, history)
    for tier in WIDTH:
        for w_lo, w_hi in ((lo + timedelta(hours=4), hi), (lo - timedelta(hours=1), lo)):
            got = states(tenant_a, device_id=device, point_id=point, agg=tier, **window(w_lo, w_hi))
            assert_rows(got, recompute(stream + history, tier, w_lo, w_hi), kind)
        # The window's first change is the one from the history's last value.
        got = states(
            tenant_a,
            device_id=device,
            point_id=point,
            agg=tier,
            **window(lo + timedelta(hours=4), hi),
        )
        assert got[0]["changes"] >= 1


def test_a_late_state_sample_in_a_compressed_raw_day_is_read_before_the_refresh(
    tenant_a: TenantFixture,
) -> None:
    # The late sample's raw day was compressed again before the refresh ran: the stale buckets
    # are recomputed from the decoded compressed samples (ts_state_of_samples' p_decode).
    # Mid-morning four days back: the two hours never straddle a raw day boundary.
    lo = (datetime.now(UTC) - timedelta(days=4)).replace(hour=10, minute=0, second=0, microsecond=0)
    hi = lo + timedelta(hours=2)
    samples: list[Sample] = [(lo + timedelta(minutes=2 * i), "heat") for i in range(60)]
    device, point = uuid.uuid4(), uuid.uuid4()
    ingest(tenant_a, device, point, samples)
    refresh_all_tiers(lo, lo + timedelta(days=1))  # past the day's end: raw may be compressed
    late = [(lo + timedelta(minutes=30, seconds=15), "cool")]
    ingest(tenant_a, device, point, late)
    compress_tier("raw", older_than_days=2)
    series = series_id_of(tenant_a, device, point)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM ts_measure WHERE series_id = %s", [series])
        assert cursor.fetchone()[0] == 0  # every sample of the day is in the compressed store
        cursor.execute("SELECT count(*) FROM ts_invalidation WHERE series_id = %s", [series])
        assert cursor.fetchone()[0] > 0  # and the late one still pending
    for tier in WIDTH:
        got = states(tenant_a, device_id=device, point_id=point, agg=tier, **window(lo, hi))
        assert_rows(got, recompute(samples + late, tier, lo, hi), "text")
