"""`python -m bench rollups`: the refresh engine beside plain SQL aggregation on the same server.

Workload (issue 3's reference): 12 numeric series = 3 tenants x 2 devices x 2 points at 1 Hz,
`--days` long (default 30 = 31.1 M samples; `--days 3` is the quick run), ending two hours before
now on an hour boundary so every tier's policy window covers it. Samples are loaded with binary
COPY straight into ts_measure (series rows and partitions created first); the invalidation
triggers fire on COPY as on any write.

Figures printed:

- full materialization of 1m (from raw), then 5m (from 1m), then 1h (from 5m), each with
  refresh(tier) as the scheduler runs it (chunks on refresh.WORKERS connections at once), beside
  `INSERT INTO scratch SELECT ... GROUP BY` over the same rows (one statement, which PostgreSQL
  never runs in parallel);
- incremental refresh of all tiers after 1 new minute (720 samples), at 7 days of history and at
  the full history: it must not grow with the table;
- refresh of all tiers after a late insert 10 days back (1 sample per series);
  the incremental and late figures beside plain SQL over the rows of the same buckets.

Where: a database of its own, `traksense_bench_rollups`, on the server TrakSense uses
(DATABASE_URL, or else the embedded PostgreSQL under TRAKSENSE_HOME), dropped and recreated
first and dropped at the end (`--keep` keeps it), so bench data never mixes with anything else.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from bench.server import server_conninfo

BENCH_DB = "traksense_bench_rollups"
ALIAS = "bench_rollups"
TENANTS, DEVICES, POINTS = 3, 2, 2
SERIES = TENANTS * DEVICES * POINTS
ORIGIN = "timestamptz '2000-01-03 00:00:00+00'"
TARGETS = {"full_1m": 12.0, "full_5m_1h": 2.0, "incremental": 0.015, "late": 0.020}
TIERS = ("1m", "5m", "1h")
REPEAT = 5


def _use_bench_database() -> None:
    """A Django connection alias on the bench database, so refresh() runs exactly as in the
    service (Python orchestration included) without touching the default database."""
    from django.conf import settings

    settings.DATABASES[ALIAS] = {**settings.DATABASES["default"], "NAME": BENCH_DB}


def prepare(server: dict[str, Any], conninfo: str) -> list[int]:
    """A fresh migrated bench database with 3 tenants and 12 numeric series; their ids."""
    with psycopg.connect(make_conninfo(**server, dbname="postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{BENCH_DB}"')
    env = {**os.environ, "DATABASE_URL": conninfo, "SCHEDULER_ENABLED": "false"}
    subprocess.run([sys.executable, "-m", "traksense", "migrate", "-v", "0"], env=env, check=True)
    series: list[int] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for n in range(TENANTS):
            tenant = conn.execute(
                # (Django's defaults are not the database's: every column is given.)
                "INSERT INTO tenant (id, name, created_at, ingest_rate, read_concurrency, tz)"
                " VALUES (%s, %s, now(), 0, 0, '') RETURNING id",
                [uuid.uuid4(), f"bench-rollups-{n}"],
            ).fetchone()
            assert tenant is not None
            for _ in range(DEVICES):
                device = uuid.uuid4()
                for _ in range(POINTS):
                    row = conn.execute(
                        "INSERT INTO ts_series (tenant_id, device_id, point_id, kind)"
                        " VALUES (%s, %s, %s, 'numeric') RETURNING series_id",
                        [tenant[0], device, uuid.uuid4()],
                    ).fetchone()
                    assert row is not None
                    series.append(int(row[0]))
    return series


def _value(second: int, series: int) -> float:
    return 20.0 + 5.0 * math.sin(second / 600.0 + series) + (second % 7) * 0.01


def load(
    conninfo: str, series: list[int], start: datetime, end: datetime, offset: float = 0.0
) -> int:
    """COPY 1 Hz samples of every series for [start, end), one COPY (and transaction) per day;
    `offset` seconds shift the instants (late samples between the existing ones)."""
    total = 0
    with psycopg.connect(conninfo) as conn:
        conn.execute("SELECT ts_ensure_partitions('raw', %s, %s)", [start, end])
        conn.commit()
        day = start
        while day < end:
            stop = min(day + timedelta(days=1), end)
            seconds = int((stop - day).total_seconds())
            base = int((day - start).total_seconds())
            with (
                conn.cursor() as cur,
                cur.copy(
                    "COPY ts_measure (series_id, ts, v_num) FROM STDIN (FORMAT BINARY)"
                ) as copy,
            ):
                copy.set_types(["int8", "timestamptz", "float8"])
                for sid in series:
                    for s in range(seconds):
                        copy.write_row(
                            (sid, day + timedelta(seconds=s + offset), _value(base + s, sid))
                        )
            conn.commit()
            total += seconds * len(series)
            day = stop
    return total


@contextmanager
def timer(into: list[float]) -> Iterator[None]:
    began = time.perf_counter()
    yield
    into.append(time.perf_counter() - began)


def refresh_tiers(tiers: tuple[str, ...] = TIERS) -> dict[str, float]:
    from traksense.rollups.refresh import refresh

    return {tier: refresh(tier, using=ALIAS).seconds for tier in tiers}


def plain_sql(
    conn: psycopg.Connection[Any], tier: str, where: str = "", params: Any = None
) -> float:
    """`INSERT INTO scratch SELECT ... GROUP BY` of one tier from its source (raw for 1m, the
    scratch table of the finer tier otherwise), over the rows selected by `where`."""
    width = {"1m": "1 minute", "5m": "5 minutes", "1h": "1 hour"}[tier]
    if tier == "1m":
        select = (
            f"SELECT series_id, date_bin('{width}', ts, {ORIGIN}), sum(v_num), min(v_num),"
            f" max(v_num), count(*) FROM ts_measure WHERE v_num IS NOT NULL {where}"
        )
    else:
        finer = {"5m": "scratch_1m", "1h": "scratch_5m"}[tier]
        select = (
            f"SELECT series_id, date_bin('{width}', bucket, {ORIGIN}), sum(v_sum), min(v_min),"
            f" max(v_max), sum(n) FROM {finer} WHERE true {where}"
        )
    began = time.perf_counter()
    conn.execute(f"INSERT INTO scratch_{tier} {select} GROUP BY 1, 2", params)
    conn.commit()
    return time.perf_counter() - began


def add_minute(conninfo: str, series: list[int], at: datetime) -> None:
    load(conninfo, series, at, at + timedelta(minutes=1))


def incremental(conninfo: str, series: list[int], at: datetime) -> tuple[dict[str, float], float]:
    """One new minute, then every tier refreshed; and plain SQL over the same buckets. Median
    of REPEAT runs (minutes at, at + 1 min, ...): a shared machine is noisy."""
    runs: list[tuple[dict[str, float], float]] = []
    for i in range(REPEAT):
        minute = at + timedelta(minutes=i)
        add_minute(conninfo, series, minute)
        ours = refresh_tiers()
        runs.append((ours, _plain_for_buckets(conninfo, minute, minute + timedelta(minutes=1))))
    return _median(runs)


def _median(runs: list[tuple[dict[str, float], float]]) -> tuple[dict[str, float], float]:
    ours = sorted(runs, key=lambda r: sum(r[0].values()))[len(runs) // 2][0]
    plain = sorted(r[1] for r in runs)[len(runs) // 2]
    return ours, plain


def _plain_for_buckets(conninfo: str, lo: datetime, hi: datetime) -> float:
    """Plain SQL for the 1m, 5m and 1h buckets around [lo, hi), from scratch tables that hold
    just those rows (the plain equivalent of recomputing the touched buckets)."""
    hour = lo.replace(minute=0, second=0, microsecond=0)
    five = lo - timedelta(minutes=lo.minute % 5, seconds=lo.second, microseconds=lo.microsecond)
    with psycopg.connect(conninfo) as conn:
        conn.execute("TRUNCATE scratch_1m, scratch_5m, scratch_1h")
        # The finer tiers' rows of the same 5-minute and hour buckets, as the refresh reads them.
        conn.execute(
            "INSERT INTO scratch_1m SELECT series_id, bucket, v_sum, v_min, v_max, n"
            " FROM ts_measure_1m WHERE bucket >= %s AND bucket < %s",
            [hour, hour + timedelta(hours=1)],
        )
        conn.execute(
            "INSERT INTO scratch_5m SELECT series_id, bucket, v_sum, v_min, v_max, n"
            " FROM ts_measure_5m WHERE bucket >= %s AND bucket < %s",
            [hour, hour + timedelta(hours=1)],
        )
        conn.commit()
        total = plain_sql(conn, "1m", "AND ts >= %s AND ts < %s", [lo, hi])
        total += plain_sql(
            conn, "5m", "AND bucket >= %s AND bucket < %s", [five, five + timedelta(minutes=5)]
        )
        total += plain_sql(
            conn, "1h", "AND bucket >= %s AND bucket < %s", [hour, hour + timedelta(hours=1)]
        )
    return total


def reset_rollups(conninfo: str, since: datetime) -> None:
    """Forget every rollup and every invalidation, and log again those of all samples since
    `since`, as the loads logged them: the next refresh is a full materialization."""
    with psycopg.connect(conninfo) as conn:
        conn.execute("TRUNCATE ts_measure_1m, ts_measure_5m, ts_measure_1h, ts_invalidation")
        conn.execute("UPDATE ts_tier SET watermark = '-infinity'")
        conn.execute(
            "INSERT INTO ts_invalidation (tier, series_id, bucket)"
            f" SELECT DISTINCT '1m', series_id, date_bin('1 minute', ts, {ORIGIN})"
            " FROM ts_measure WHERE ts >= %s",
            [since],
        )
        conn.commit()


def vacuum(conninfo: str) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) ts_measure")
        conn.execute("VACUUM (ANALYZE) ts_invalidation")


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


def _verdict(value: float, target: float) -> str:
    return "met" if value <= target else "MISSED"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench rollups", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--days", type=int, default=30, help="history length (default 30; 3 = quick)"
    )
    parser.add_argument("--keep", action="store_true", help=f"keep the {BENCH_DB} database")
    args = parser.parse_args(argv)
    if args.days < 1:
        parser.error("--days must be at least 1")

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "traksense.settings")
    import django

    django.setup()
    server = server_conninfo()
    conninfo = make_conninfo(**server, dbname=BENCH_DB)
    _use_bench_database()
    say: Callable[..., None] = lambda *a: print(*a, flush=True)  # noqa: E731

    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    start = end - timedelta(days=args.days)
    recent = end - timedelta(days=min(7, args.days))
    series = prepare(server, conninfo)
    with psycopg.connect(conninfo) as conn:
        version = conn.execute("SHOW server_version").fetchone()
        conn.execute(
            "CREATE TABLE scratch_1m (series_id bigint, bucket timestamptz, v_sum float8,"
            " v_min float8, v_max float8, n bigint)"
        )
        conn.execute("CREATE TABLE scratch_5m (LIKE scratch_1m)")
        conn.execute("CREATE TABLE scratch_1h (LIKE scratch_1m)")
        conn.commit()
    say(
        f"PostgreSQL {version[0] if version else '?'}, database {BENCH_DB}:"
        f" {SERIES} series at 1 Hz for {args.days} days ({args.days * 86400 * SERIES:,} samples)"
    )

    # Phase 1: the most recent (up to) 7 days, materialized, then one new minute.
    began = time.perf_counter()
    loaded = load(conninfo, series, recent, end)
    vacuum(conninfo)
    say(
        f"loaded {loaded:,} samples ({(end - recent).days} days) by COPY in"
        f" {time.perf_counter() - began:.1f} s"
    )
    refresh_tiers()
    inc7, plain7 = incremental(conninfo, series, end)
    history7 = (end - recent).days

    # Phase 2: the older days too; every rollup forgotten and the whole history materialized.
    if start < recent:
        began = time.perf_counter()
        loaded = load(conninfo, series, start, recent)
        say(f"loaded {loaded:,} more samples by COPY in {time.perf_counter() - began:.1f} s")
    reset_rollups(conninfo, start)
    vacuum(conninfo)

    full = refresh_tiers(("1m",))
    say(f"full 1m materialization: {full['1m']:.2f} s")
    full.update(refresh_tiers(("5m", "1h")))
    with psycopg.connect(conninfo) as conn:
        plain_full = {tier: plain_sql(conn, tier) for tier in TIERS}
        counts = {}
        for tier in TIERS:
            row = conn.execute(f"SELECT count(*) FROM ts_measure_{tier}").fetchone()
            counts[tier] = int(row[0]) if row else 0

    inc, plain_inc = incremental(conninfo, series, end + timedelta(minutes=REPEAT))

    # A late sample per series 10 days back (between two existing samples), all tiers refreshed.
    late_runs = []
    for i in range(REPEAT):
        late_at = end - timedelta(days=min(10, args.days), minutes=-i, seconds=-30)
        with psycopg.connect(conninfo) as conn:
            conn.execute(
                "INSERT INTO ts_measure (series_id, ts, v_num)"
                " SELECT s, %s, 42.0 FROM unnest(%s::bigint[]) s",
                [late_at + timedelta(milliseconds=500), series],
            )
            conn.commit()
        ours = refresh_tiers()
        late_runs.append(
            (ours, _plain_for_buckets(conninfo, late_at, late_at + timedelta(minutes=1)))
        )
    late, plain_late = _median(late_runs)

    say()
    say(f"{'':44}{'TrakSense':>12}{'plain SQL':>12}   (incremental/late: median of {REPEAT})")
    for tier in TIERS:
        rows = counts[tier]
        say(
            f"full materialization {tier:>3} ({rows:>9,} rows){'':9}"
            f"{full[tier]:>10.2f} s{plain_full[tier]:>10.2f} s"
        )
    say(
        f"incremental, 1 new minute, {history7:>2} days of history  "
        f"{_ms(sum(inc7.values()))}  {_ms(plain7)}"
        f"   ({', '.join(f'{t} {v * 1000:.1f}' for t, v in inc7.items())} ms)"
    )
    say(
        f"incremental, 1 new minute, {args.days:>2} days of history  "
        f"{_ms(sum(inc.values()))}  {_ms(plain_inc)}"
        f"   ({', '.join(f'{t} {v * 1000:.1f}' for t, v in inc.items())} ms)"
    )
    say(
        f"late insert {min(10, args.days)} days back, 1 sample/series   "
        f"{_ms(sum(late.values()))}  {_ms(plain_late)}"
        f"   ({', '.join(f'{t} {v * 1000:.1f}' for t, v in late.items())} ms)"
    )
    say()
    scale = 30 / args.days
    say(f"targets (30 days; shorter runs scaled x{scale:g} for the full figures):")
    say(f"  full 1m <= 12 s: {full['1m'] * scale:.2f} s {_verdict(full['1m'] * scale, 12)}")
    both = (full["5m"] + full["1h"]) * scale
    say(f"  5m + 1h from 1m <= 2 s: {both:.2f} s {_verdict(both, 2)}")
    worst_inc = max(sum(inc.values()), sum(inc7.values()))
    say(
        f"  incremental, all tiers <= 15 ms: {worst_inc * 1000:.1f} ms {_verdict(worst_inc, 0.015)}"
    )
    say(
        f"  late insert, all tiers <= 20 ms: {sum(late.values()) * 1000:.1f} ms"
        f" {_verdict(sum(late.values()), 0.020)}"
    )

    from django.db import connections

    connections[ALIAS].close()
    if not args.keep:
        with psycopg.connect(make_conninfo(**server, dbname="postgres"), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
    return 0
