"""`python -m bench compression`: bytes per rollup row before and after compression, per tier,
compression time, and 30-day query latency on compressed beside uncompressed data.

Workload: `--series` series (default 12, the reference workload's), each a sensor reporting every
10 s with two decimals (a random walk, as temperatures and pressures do), rolled up exactly as the
refresh engine does (v_sum = float sum of the samples, v_min, v_max, n): 1m over 35 days, 5m over
112 days, 1h over 364 days, loaded with COPY straight into ts_measure_1m/5m/1h (sorted by series
and bucket, as a refresh writes them). `--values noise` uses full-precision random doubles
instead: the worst case, which no lossless codec shrinks much.

Figures, all from the same run on the same server:

- bytes/row before: pg_total_relation_size (heap, primary key, TOAST, maps) of the tier's
  partitions after COPY + VACUUM ANALYZE, over the rows;
- bytes/row after: the same for the compressed partitions (ts_compression_stats), ratio, and
  the time ts_compress_partition() took for the whole tier;
- query latency: one series, 30 days @1m, @5m and @1h, and 1 day @1m (part of a compressed
  segment, "1m/1d") through the tier's real-time relation
  (what the tenant views read) and through the API's read functions (ts_read_rollup_<tier>,
  ts_read_raw), median of `--repeat` runs, uncompressed (before compressing) beside compressed
  (after): once counted in the database (what the server does), once fetched into Python with a
  binary cursor (what a client sees). Then, in one state of the database, the read functions on
  series 1 (compressed) and on series 2 (restored to the uncompressed tiers), their runs taking
  turns: the comparison least moved by the machine's drift during a run.

The optional raw compression (COMPRESS_RAW_AFTER_DAYS) is measured the same way on `--raw-days`
days (default 7) of the same sensors' raw samples, every 10 s: bytes per sample before and
after, and a 1-day query of one series through the same union ts_read_raw() reads.

Where: a database of its own, `traksense_bench_compression`, created on the server TrakSense uses
(DATABASE_URL, or the embedded PostgreSQL under TRAKSENSE_HOME) and dropped at the end (`--keep`
keeps it).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from bench.server import fresh_database

BENCH_DB = "traksense_bench_compression"
BENCH_TENANT = "0b0e0e0e-0000-4000-8000-00000000000c"
ORIGIN = datetime(2000, 1, 3, tzinfo=UTC)
# Tier, bucket width, days loaded (whole partitions: 7, 28, 91 days).
TIERS = (
    ("1m", timedelta(minutes=1), 35),
    ("5m", timedelta(minutes=5), 112),
    ("1h", timedelta(hours=1), 364),
)
TARGET_BYTES, TARGET_RATIO = 16.0, 10.0
RAW_STEP = timedelta(seconds=10)
# ts_read_raw()'s statement (65_read.sql) on one series, as the owner.
RAW_QUERY = (
    "SELECT m.ts, m.v_num FROM ts_measure_rt m"
    " WHERE m.series_id = 1 AND m.ts >= %(s)s AND m.ts < %(e)s"
    " AND m.segment >= ts_partition_start('raw', %(s)s) AND m.segment < %(e)s ORDER BY m.ts"
)


def _load_raw(conn: psycopg.Connection[Any], series: int, start: datetime, days: int) -> None:
    """Raw samples every 10 s, two decimals (a random walk), straight into ts_measure; counted
    as materialized (the triggers' invalidations are dropped)."""
    rng = random.Random(7)
    conn.execute(
        "SELECT ts_ensure_partitions('raw', %s, %s)", [start, start + timedelta(days=days)]
    )
    with (
        conn.cursor() as cur,
        cur.copy("COPY ts_measure (series_id, ts, v_num) FROM STDIN") as copy,
    ):
        for s in range(1, series + 1):
            level = 20.0 + s
            for i in range(int(timedelta(days=days) / RAW_STEP)):
                level += rng.uniform(-0.05, 0.05)
                copy.write_row((s, start + i * RAW_STEP, round(level, 2)))
    conn.execute("DELETE FROM ts_invalidation")
    conn.execute("VACUUM ANALYZE ts_measure")


def _rows(
    series: int, width: timedelta, start: datetime, days: int, noise: bool, rng: random.Random
) -> list[tuple[int, datetime, float, float, float, int]]:
    """Rollup rows of `width` built from 10-second samples, as the refresh engine computes them."""
    per = int(width.total_seconds()) // 10
    count = int(timedelta(days=days) / width)
    out = []
    for s in range(1, series + 1):
        level = 20.0 + s
        for i in range(count):
            values = []
            for _ in range(per):
                if noise:
                    values.append(rng.uniform(-100.0, 100.0))
                else:
                    level += rng.uniform(-0.05, 0.05)
                    values.append(round(level, 2))
            total = 0.0
            for v in values:  # left to right, as PostgreSQL's sum(float8)
                total += v
            out.append((s, start + i * width, total, min(values), max(values), per))
    return out


def _start(days_back: int, now: datetime) -> datetime:
    """A partition-aligned start (Monday 00:00 UTC, multiple of 91 days from the origin) so that
    every partition loaded is whole."""
    t = now - timedelta(days=days_back)
    return ORIGIN + ((t - ORIGIN) // timedelta(days=364)) * timedelta(days=364)


@contextmanager
def bound(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """A transaction bound to the bench's tenant: the read functions answer only inside one
    (15_tenant_binding.sql), as they run for the API."""
    with conn.transaction():
        conn.execute("SELECT ts_bind_tenant(%s)", [BENCH_TENANT])
        yield


def _median_ms(
    conn: psycopg.Connection[Any], query: str, params: dict[str, Any], repeat: int
) -> tuple[float, float]:
    """Median ms of the query run in the database only (its rows counted there, none sent; the
    row test makes every column be read, not just the index) and fetched (every row, binary,
    into Python)."""
    out = []
    for statement in (f"SELECT count(*) FROM ({query}) q WHERE q IS NOT NULL", query):
        times = []
        for _ in range(2):  # warm-up: plans, caches
            conn.execute(statement, params).fetchall()
        for _ in range(repeat):
            t0 = time.perf_counter()
            with conn.cursor(binary=True) as cur:
                cur.execute(statement, params).fetchall()
            times.append((time.perf_counter() - t0) * 1000)
        out.append(statistics.median(times))
    return out[0], out[1]


def _interleaved_ms(
    conn: psycopg.Connection[Any], queries: list[tuple[str, dict[str, Any]]], repeat: int
) -> list[tuple[float, float]]:
    """_median_ms of several queries, their runs taking turns (a, b, a, b, ...), so that
    whatever drifts during a run (the machine's speed, caches) weighs on each alike."""
    out = []
    for shape in ("SELECT count(*) FROM ({}) q WHERE q IS NOT NULL", "{}"):
        statements = [(shape.format(q), p) for q, p in queries]
        times: list[list[float]] = [[] for _ in statements]
        for statement, params in statements * 2:  # warm-up: plans, caches
            conn.execute(statement, params).fetchall()
        for _ in range(repeat):
            for i, (statement, params) in enumerate(statements):
                t0 = time.perf_counter()
                with conn.cursor(binary=True) as cur:
                    cur.execute(statement, params).fetchall()
                times[i].append((time.perf_counter() - t0) * 1000)
        out.append([statistics.median(t) for t in times])
    return list(zip(out[0], out[1], strict=True))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench compression",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--series", type=int, default=12)
    parser.add_argument("--values", choices=("sensor", "noise"), default="sensor")
    parser.add_argument("--repeat", type=int, default=11)
    parser.add_argument("--raw-days", type=int, default=7, help="days of raw samples (0: none)")
    parser.add_argument("--keep", action="store_true", help=f"keep the {BENCH_DB} database")
    args = parser.parse_args(argv)

    rng = random.Random(42)
    failed = False
    with fresh_database(BENCH_DB, keep=args.keep) as conninfo:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            # As the API's read functions run (65_read.sql), for a tenant owning the series.
            conn.execute("SET max_parallel_workers_per_gather = 0")
            conn.execute(
                "INSERT INTO ts_series (series_id, tenant_id, device_id, point_id, kind)"
                " OVERRIDING SYSTEM VALUE SELECT g, %s, gen_random_uuid(), gen_random_uuid(),"
                " 'numeric' FROM generate_series(1, %s) g",
                [BENCH_TENANT, args.series],
            )
            row = conn.execute("SELECT current_setting('server_version'), now()").fetchone()
            assert row is not None
            version, now = row
            print(
                f"PostgreSQL {version}, database {BENCH_DB}, {args.series} series, "
                f"values: {args.values}"
            )
            start = _start(400, now)
            spans: dict[str, tuple[datetime, datetime]] = {}
            for tier, width, days in TIERS:
                rows = _rows(args.series, width, start, days, args.values == "noise", rng)
                end = start + timedelta(days=days)
                spans[tier] = (start, end)
                conn.execute("SELECT ts_ensure_partitions(%s, %s, %s)", [tier, start, end])
                with (
                    conn.cursor() as cur,
                    cur.copy(
                        f"COPY ts_measure_{tier} (series_id, bucket, v_sum, v_min, v_max, n)"
                        " FROM STDIN"
                    ) as copy,
                ):
                    for r in rows:
                        copy.write_row(r)
                conn.execute(f"VACUUM ANALYZE ts_measure_{tier}")
                # The loaded range is materialized: the views read it from the tier.
                conn.execute("UPDATE ts_tier SET watermark = %s WHERE tier = %s", [end, tier])
            tiers = [t for t, _w, _d in TIERS]
            if args.raw_days:
                _load_raw(conn, args.series, start, args.raw_days)
                tiers.append("raw")

            # The API's query shape: the segment bounds skip compressed segments outside the
            # range before anything is decoded (60_tier_views.sql).
            q = (
                "SELECT bucket, v_sum / n, v_min, v_max, n FROM ts_measure_{0}_rt"
                " WHERE series_id = 1 AND bucket >= %(s)s AND bucket < %(e)s"
                " AND segment >= ts_partition_start('{0}', %(s)s) AND segment < %(e)s"
                " ORDER BY bucket"
            )
            window = {
                t: {"s": spans[t][0] + timedelta(days=2), "e": spans[t][0] + timedelta(days=32)}
                for t in ("1m", "5m", "1h")
            }
            queries = {t: q.format(t) for t in window}
            # The same ranges through the API's read functions (65_read.sql).
            reads = {
                t: f"SELECT * FROM ts_read_rollup_{t}(1, %(s)s, %(e)s, 100000)" for t in window
            }
            # One day @1m inside a segment ("1m/1d"): pglz decompresses whole arrays, so a read
            # of part of a segment decompresses all of it, where compressed reads cost more.
            day = spans["1m"][0] + timedelta(days=2, hours=7)
            window["1m/1d"] = {"s": day, "e": day + timedelta(days=1)}
            queries["1m/1d"], reads["1m/1d"] = queries["1m"], reads["1m"]
            if args.raw_days:
                day = start + timedelta(days=min(2, args.raw_days - 1), hours=7)
                window["raw"] = {"s": day, "e": day + timedelta(days=1)}
                queries["raw"] = RAW_QUERY
                reads["raw"] = "SELECT * FROM ts_read_raw(1, %(s)s, %(e)s, 100000)"
            before_ms = {t: _median_ms(conn, queries[t], window[t], args.repeat) for t in window}
            with bound(conn):
                before_fn = {t: _median_ms(conn, reads[t], window[t], args.repeat) for t in window}
            answers = {t: conn.execute(queries[t], window[t]).fetchall() for t in window}

            sizes: dict[str, tuple[int, int]] = {}
            for tier in tiers:
                relation = "ts_measure" if tier == "raw" else f"ts_measure_{tier}"
                row = conn.execute(
                    "SELECT sum(pg_total_relation_size(p.name::regclass)),"
                    f" (SELECT count(*) FROM {relation})"
                    " FROM ts_partition p WHERE p.tier = %s",
                    [tier],
                ).fetchone()
                assert row is not None
                sizes[tier] = (int(row[0]), int(row[1]))
            seconds: dict[str, float] = {}
            for tier in tiers:
                names = [
                    r[0]
                    for r in conn.execute(
                        "SELECT ts_compression_candidates(%s, now())", [tier]
                    ).fetchall()
                ]
                t0 = time.perf_counter()
                for name in names:
                    conn.execute("SELECT ts_compress_partition(%s)", [name])
                seconds[tier] = time.perf_counter() - t0
            after_ms = {t: _median_ms(conn, queries[t], window[t], args.repeat) for t in window}
            with bound(conn):
                after_fn = {t: _median_ms(conn, reads[t], window[t], args.repeat) for t in window}
                for t in window:
                    assert answers[t], f"the {t} window of the bench holds no rows"
                    cols = len(answers[t][0])  # raw: ts, v_num of 4 columns
                    got = [r[:cols] for r in conn.execute(reads[t], window[t]).fetchall()]
                    if got != answers[t]:
                        print(f"MISMATCH: the {t} read function's answer differs from the view's")
                        failed = True
                if conn.execute(queries[t], window[t]).fetchall() != answers[t]:
                    print(f"MISMATCH: the {t} answer changed after compression")
                    failed = True

            print(
                f"\n{'tier':<5}{'rows':>10}{'B/row before':>14}{'B/row after':>13}"
                f"{'ratio':>8}{'compress s':>12}{'rows/s':>11}"
            )
            stats = {
                r[0]: r
                for r in conn.execute(
                    "SELECT tier, rows_compressed, bytes_after FROM ts_compression_stats"
                ).fetchall()
            }
            for tier in tiers:
                before, rows_n = sizes[tier]
                after = int(stats[tier][2])
                b_before, b_after = before / rows_n, after / rows_n
                ratio = before / after
                ok = b_after <= TARGET_BYTES and ratio >= TARGET_RATIO
                if tier == "raw":
                    verdict = "(optional raw compression: no target)"
                else:
                    failed |= not ok
                    verdict = (
                        f"{'ok' if ok else 'MISSES'} (<= {TARGET_BYTES:g} B/row, >= "
                        f"{TARGET_RATIO:g}x)"
                    )
                print(
                    f"{tier:<5}{rows_n:>10,}{b_before:>14.1f}{b_after:>13.1f}{ratio:>7.1f}x"
                    f"{seconds[tier]:>12.2f}{rows_n / seconds[tier]:>11,.0f}  {verdict}"
                )
            print(
                f"\nQuery, one series (median of {args.repeat}), 30 days (1m/1d, raw: 1 day), "
                "uncompressed vs compressed: in the database (rows counted there) | fetched"
            )
            for label, before_t, after_t in (
                ("the tier's real-time view", before_ms, after_ms),
                (
                    "the API's read functions, ts_read_rollup_<tier> / ts_read_raw",
                    before_fn,
                    after_fn,
                ),
            ):
                print(f" through {label}:")
                for t in window:
                    (db0, fetch0), (db1, fetch1) = before_t[t], after_t[t]
                    print(
                        f"  {t:<6}{len(answers[t]):>6} rows  {db0:7.2f} vs {db1:7.2f} ms"
                        f" ({db1 / db0:.2f}x)  | {fetch0:7.2f} vs {fetch1:7.2f} ms"
                        f" ({fetch1 / fetch0:.2f}x)"
                    )
            # The same reads, taking turns, on series 1 (compressed) and series 2 restored to
            # the uncompressed tiers (ts_decompress_segment): one state of the database, no
            # drift between a "before" and an "after".
            for t in dict.fromkeys(w.split("/")[0] for w in window):
                store = "ts_measure_z" if t == "raw" else f"ts_measure_{t}_z"
                conn.execute(
                    "SELECT ts_decompress_segment(%s, 2, seg_start)"
                    f" FROM {store} WHERE series_id = 2",
                    [t],
                )
            conn.execute("VACUUM ANALYZE ts_measure, ts_measure_1m, ts_measure_5m, ts_measure_1h")
            print(
                f" through the API's read functions, taking turns (median of {3 * args.repeat}):"
                " series 2 restored uncompressed vs series 1 compressed:"
            )
            for t in window:
                with bound(conn):
                    (db0, fetch0), (db1, fetch1) = _interleaved_ms(
                        conn,
                        [(reads[t].replace("(1,", "(2,"), window[t]), (reads[t], window[t])],
                        3 * args.repeat,
                    )
                print(
                    f"  {t:<6}{len(answers[t]):>6} rows  {db0:7.2f} vs {db1:7.2f} ms"
                    f" ({db1 / db0:.2f}x)  | {fetch0:7.2f} vs {fetch1:7.2f} ms"
                    f" ({fetch1 / fetch0:.2f}x)"
                )
    return 1 if failed else 0
