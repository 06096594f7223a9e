"""State rollups stored like the numeric tiers (issue 19, DESIGN §5): partitioned beside the
numeric partitions, compressed with them, dropped with them; every answer the same before and
after compression, late data into a compressed range exact."""

from __future__ import annotations

import math
import struct
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from django.db import connection

from traksense.conftest import TenantFixture
from traksense.db.context import tenant_context
from traksense.points.test_read import get, ingest, series_id_of, window
from traksense.rollups.compression import compress_tier
from traksense.rollups.jobs import db_now
from traksense.rollups.refresh import refresh
from traksense.rollups.retention import expire
from traksense.rollups.test_counters import mark, meter
from traksense.rollups.test_state_rollups import assert_rows, irregular_states, recompute

pytestmark = pytest.mark.django_db

TIERS = ("1m", "5m", "1h")


def refresh_everything() -> None:
    for tier in TIERS:
        refresh(tier, None, db_now())


def compress_everything() -> dict[str, int]:
    # Older than a day: 40 days back lies in an ended partition of every tier (1m: 1 day,
    # 5m: 7 days, 1h: 28 days). Returns the state rows each tier's job reported.
    return {tier: compress_tier(tier, older_than_days=1).state_rows for tier in TIERS}


def answers(
    tenant: TenantFixture, points: list[tuple[uuid.UUID, uuid.UUID]], lo: datetime, hi: datetime
) -> dict[tuple[str, str, str], Any]:
    got = {}
    for device, point in points:
        for agg in (*TIERS, "1d"):
            for only in ("false", "true"):
                response = get(
                    tenant,
                    device_id=device,
                    point_id=point,
                    agg=agg,
                    materialized_only=only,
                    **window(lo, hi),
                )
                assert response.status_code == 200, response.content
                got[(str(point), agg, only)] = orjson.loads(response.content)["data"]
    return got


def stored(series: list[int]) -> dict[str, tuple[int, int]]:
    """Per tier: the series' rows in the state tables and in the compressed store."""
    out = {}
    with connection.cursor() as cursor:
        for tier in TIERS:
            cursor.execute(
                f"SELECT count(*) FROM ts_state_{tier} WHERE series_id = ANY (%s)", [series]
            )
            plain = cursor.fetchone()[0]
            cursor.execute(
                "SELECT coalesce(sum(n_rows), 0) FROM ts_state_z"
                " WHERE tier = %s AND series_id = ANY (%s)",
                [tier, series],
            )
            out[tier] = (plain, int(cursor.fetchone()[0]))
    return out


@pytest.fixture
def history(tenant_a: TenantFixture) -> dict[str, Any]:
    """A boolean, a text and a counter point over six hours 40 days back, refreshed."""
    lo = (datetime.now(UTC) - timedelta(days=40)).replace(hour=8, minute=0, second=0, microsecond=0)
    hi = lo + timedelta(hours=6)
    device = uuid.uuid4()
    points = {
        "boolean": (uuid.uuid4(), irregular_states(lo, hi, [True, False], seed=3)),
        "text": (uuid.uuid4(), irregular_states(lo, hi, ["heat", "cool", "off"], seed=4)),
        "counter": (uuid.uuid4(), meter(lo, hi, seed=5)),
    }
    for point, samples in points.values():
        ingest(tenant_a, device, point, samples)
    mark(tenant_a, device, points["counter"][0])
    refresh_everything()
    series = [series_id_of(tenant_a, device, p) for p, _ in points.values()]
    return {"lo": lo, "hi": hi, "device": device, "points": points, "series": series}


def test_state_rows_answer_the_same_once_compressed(
    tenant_a: TenantFixture, tenant_b: TenantFixture, history: dict[str, Any]
) -> None:
    device, lo, hi = history["device"], history["lo"], history["hi"]
    pairs = [(device, p) for p, _ in history["points"].values()]
    before = answers(tenant_a, pairs, lo - timedelta(hours=1), hi + timedelta(hours=1))
    rows = stored(history["series"])
    assert all(plain > 0 and packed == 0 for plain, packed in rows.values()), rows

    reported = compress_everything()

    after = stored(history["series"])
    # Every row moved to the compressed store, none lost or doubled, and the job said so.
    assert after == {tier: (0, plain) for tier, (plain, _) in rows.items()}
    assert all(reported[tier] >= plain for tier, (plain, _) in rows.items()), reported
    assert answers(tenant_a, pairs, lo - timedelta(hours=1), hi + timedelta(hours=1)) == before
    # Windows that start and end inside compressed segments: the rows before and after them
    # come from the compressed store too.
    for name in ("boolean", "text"):
        point, samples = history["points"][name]
        for tier in TIERS:
            w_lo, w_hi = lo + timedelta(hours=2), lo + timedelta(hours=3, minutes=10)
            response = get(
                tenant_a, device_id=device, point_id=point, agg=tier, **window(w_lo, w_hi)
            )
            assert_rows(
                orjson.loads(response.content)["data"], recompute(samples, tier, w_lo, w_hi), name
            )
    # Still closed to another tenant, through the API and the read functions.
    for point, _ in history["points"].values():
        assert (
            get(tenant_b, device_id=device, point_id=point, agg="1m", **window(lo, hi)).status_code
            == 404
        )
    with tenant_context(tenant_b.id) as cursor:
        for tier in TIERS:
            cursor.execute(
                f"SELECT count(*) FROM ts_read_state_{tier}(%s, %s, %s, 1000)",
                [history["series"][0], lo, hi],
            )
            assert cursor.fetchone() == (0,)
        cursor.execute("SELECT has_table_privilege('ts_state_z', 'SELECT')")
        assert cursor.fetchone() == (False,)


def test_a_late_sample_into_a_compressed_range_is_exact_before_and_after_the_refresh(
    tenant_a: TenantFixture, history: dict[str, Any]
) -> None:
    device, lo, hi = history["device"], history["lo"], history["hi"]
    point, samples = history["points"]["boolean"]
    series = series_id_of(tenant_a, device, point)
    compress_everything()
    packed = stored([series])
    late = [
        (lo + timedelta(hours=1, minutes=30, seconds=5), not samples[0][1]),
        (lo + timedelta(hours=4, seconds=1), True),
    ]
    ingest(tenant_a, device, point, late)
    everything = samples + late

    def check() -> None:
        for tier in TIERS:
            response = get(tenant_a, device_id=device, point_id=point, agg=tier, **window(lo, hi))
            assert_rows(
                orjson.loads(response.content)["data"],
                recompute(everything, tier, lo, hi),
                "boolean",
            )

    check()  # read-your-writes, the compressed rows recomputed on the fly
    refresh_everything()
    check()
    restored = stored([series])
    # The refresh restored the segments it wrote into, and rewrote them there.
    assert all(plain > 0 for plain, _ in restored.values()), restored
    rows = every_row(series)
    compress_everything()
    check()
    assert all(plain == 0 for plain, _ in stored([series]).values())
    assert every_row(series) == rows  # compressed again: the same rows, once each
    assert packed["1m"][1] <= sum(restored["1m"])


def every_row(series: int) -> dict[str, list[tuple[Any, ...]]]:
    """Per tier: the series' stored state rows, plain and compressed, in bucket order."""
    with connection.cursor() as cursor:
        out = {}
        for tier in TIERS:
            cursor.execute(
                "SELECT * FROM ts_state_stored(%s, %s, '-infinity', 'infinity') ORDER BY bucket",
                [tier, series],
            )
            out[tier] = list(cursor.fetchall())
            assert len({r[1] for r in out[tier]}) == len(out[tier])
    return out


def test_state_partitions_go_with_their_tier(
    tenant_a: TenantFixture, history: dict[str, Any]
) -> None:
    # Each rollup partition has its state sibling, with the same bounds; a counter turned off
    # loses its compressed rows with the plain ones; retention drops whole partitions.
    lo = history["lo"]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT p.tier, p.name, ts_state_partition(p.tier, p.lo),"
            " pg_get_expr(c.relpartbound, c.oid), pg_get_expr(s.relpartbound, s.oid)"
            " FROM ts_partition p JOIN pg_class c ON c.oid = to_regclass(p.name)"
            " JOIN pg_class s ON s.oid = to_regclass(ts_state_partition(p.tier, p.lo))"
            " WHERE p.tier IN ('1m', '5m', '1h') AND p.lo <= %s AND p.hi > %s",
            [lo, lo],
        )
        siblings = cursor.fetchall()
    assert sorted(r[0] for r in siblings) == ["1h", "1m", "5m"]
    assert all(r[3] == r[4] for r in siblings), siblings

    compress_everything()
    counter = history["series"][2]
    assert stored([counter])["1m"][1] > 0
    mark(tenant_a, history["device"], history["points"]["counter"][0], on=False)
    assert stored([counter]) == {tier: (0, 0) for tier in TIERS}

    state_1m = {r[2] for r in siblings if r[0] == "1m"}
    now = db_now() + timedelta(days=366)  # the 1m partition 40 days back is past retention
    assert expire("1m", now=now).dropped
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NULL", list(state_1m))
        assert cursor.fetchone() == (True,)
        cursor.execute(
            "SELECT count(*) FROM ts_state_z WHERE tier = '1m' AND seg_start <= %s", [lo]
        )
        assert cursor.fetchone() == (0,)
        cursor.execute(
            "SELECT count(*) FROM ts_state_z WHERE tier = '5m' AND series_id = ANY (%s)",
            [history["series"][:2]],
        )
        assert cursor.fetchone()[0] > 0  # the coarser tiers keep theirs


def test_compressed_state_rows_take_less_room(history: dict[str, Any]) -> None:
    def size(table: str, tier: str | None = None) -> int:
        with connection.cursor() as cursor:
            where = "" if tier is None else f" WHERE tier = '{tier}'"
            cursor.execute(
                f"SELECT coalesce(sum(pg_column_size(t.*)), 0) FROM {table} t"
                f"{where}{' AND' if tier else ' WHERE'} series_id = ANY (%s)",
                [history["series"]],
            )
            return int(cursor.fetchone()[0])

    plain = size("ts_state_1m")
    compress_everything()
    packed = size("ts_state_z", "1m")
    assert 0 < packed < plain / 2, (plain, packed)


def test_late_states_where_no_numeric_row_ever_was_get_their_partitions(
    tenant_a: TenantFixture,
) -> None:
    # A range of boolean points only, written below every tier's threshold (late): their keys'
    # refresh writes state rows where no numeric partition (and no state sibling) exists yet.
    refresh_everything()
    lo = (datetime.now(UTC) - timedelta(days=200)).replace(
        hour=5, minute=0, second=0, microsecond=0
    )
    samples = irregular_states(lo, lo + timedelta(hours=2), [True, False], seed=11)
    device, point = uuid.uuid4(), uuid.uuid4()
    ingest(tenant_a, device, point, samples)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM ts_invalidation WHERE series_id = %s",
            [series_id_of(tenant_a, device, point)],
        )
        assert cursor.fetchone()[0] > 0  # logged: the keys' path, not the region's
    refresh_everything()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM ts_partition WHERE tier IN ('1m', '5m', '1h')"
            " AND lo <= %s AND hi > %s AND to_regclass(ts_state_partition(tier, lo)) IS NOT NULL",
            [lo, lo],
        )
        assert cursor.fetchone() == (3,)
    for tier in TIERS:
        hi = lo + timedelta(hours=2)
        response = get(
            tenant_a,
            device_id=device,
            point_id=point,
            agg=tier,
            materialized_only="true",
            **window(lo, hi),
        )
        assert_rows(
            orjson.loads(response.content)["data"], recompute(samples, tier, lo, hi), "boolean"
        )


def test_storage_counts_the_state_rows_with_their_tier(history: dict[str, Any]) -> None:
    from traksense.rollups.storage import tier_storage

    def figures() -> dict[str, tuple[int, int]]:
        return {t.tier: (t.compressed_rows, t.compressed_bytes) for t in tier_storage()}

    before = figures()
    compress_everything()
    after = figures()
    rows = stored(history["series"])
    for tier in TIERS:
        # (the numeric rows of the counter were compressed too)
        assert after[tier][0] - before[tier][0] >= rows[tier][1] > 0, tier
        assert after[tier][1] > before[tier][1], tier


def test_a_rollup_partition_without_its_state_sibling_gets_one_at_migrate() -> None:
    # As a partition registered by the definitions before 0011's, while migrate ran, would be.
    from traksense.db.sqlfiles import apply_definitions

    lo = datetime(2031, 3, 3, tzinfo=UTC)  # a Monday: the start of a 5m partition too
    with connection.cursor() as cursor:
        for tier in TIERS:
            cursor.execute(
                "SELECT ts_ensure_partitions(%s, %s, %s)", [tier, lo, lo + timedelta(days=1)]
            )
            cursor.execute(
                "SELECT ts_state_partition(%s, ts_partition_start(%s, %s))", [tier, tier, lo]
            )
            sibling = cursor.fetchone()[0]
            cursor.execute(f"DROP TABLE {sibling}")
    apply_definitions()
    with connection.cursor() as cursor:
        for tier in TIERS:
            cursor.execute(
                "SELECT p.lo, p.hi, pg_get_expr(c.relpartbound, c.oid)"
                " FROM ts_partition p"
                " JOIN pg_class c ON c.oid = to_regclass(ts_state_partition(p.tier, p.lo))"
                " WHERE p.tier = %s AND p.lo <= %s AND p.hi > %s",
                [tier, lo, lo],
            )
            row = cursor.fetchone()
            assert row is not None, tier
            assert row[0].isoformat()[:10] in row[2], row
            # and it takes rows, its keys included
            cursor.execute(
                f"INSERT INTO ts_state_{tier} (series_id, bucket, n, t_first, t_last, s_first,"
                " s_last, changes, time_in) VALUES (1, %s, 1, %s, %s, 'on', 'on', 0, '{}')"
                " ON CONFLICT (series_id, bucket) DO NOTHING",
                [lo, lo, lo],
            )


@pytest.mark.parametrize(("readings", "scaled"), [(0.25, True), (math.pi, False)])
def test_a_meter_s_readings_come_back_bit_for_bit_scaled_or_not(
    tenant_a: TenantFixture, readings: float, scaled: bool
) -> None:
    # Readings that are exact decimals are stored scaled (k / 10^d), others as float8: either
    # way every row decodes to the same bits.
    lo = (datetime.now(UTC) - timedelta(days=40)).replace(hour=3, minute=0, second=0, microsecond=0)
    device, point = uuid.uuid4(), uuid.uuid4()
    samples = [(lo + timedelta(seconds=37 * i), 5000 + i * readings) for i in range(400)]
    ingest(tenant_a, device, point, samples)
    mark(tenant_a, device, point)
    refresh_everything()
    series = series_id_of(tenant_a, device, point)
    before = every_row(series)
    compress_everything()
    with connection.cursor() as cursor:
        cursor.execute("SELECT tier, scale FROM ts_state_z WHERE series_id = %s", [series])
        forms = dict(cursor.fetchall())
    assert set(forms) == set(TIERS)
    assert all((scale is not None) == scaled for scale in forms.values()), forms
    after = every_row(series)
    # float8send: the same bits, not only equal values
    assert [[(r[1], struct.pack("!dd", r[9], r[10])) for r in after[t]] for t in TIERS] == [
        [(r[1], struct.pack("!dd", r[9], r[10])) for r in before[t]] for t in TIERS
    ]
    assert after == before
