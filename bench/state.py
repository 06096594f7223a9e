"""`python -m bench state`: the state rollups' compressed form (issue 19, 58_state_compress.sql).

One day of 1m state rows of once-a-minute points (on/off points, modes, meters), written
straight into a partition of ts_state_1m, then compressed by ts_state_compress (what the
compression job runs): bytes per row before (the partition: heap and indexes) and after
(the compressed store), per kind, the rows compressed per second, and reading one point's day
from the table against from the compressed store, on the same server in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime
from typing import Any

import psycopg

from bench.server import fresh_database

DAY = datetime(2026, 11, 16, tzinfo=UTC)  # a Monday; any ended day will do
FIRST = 1_000_001  # series ids of the synthetic points (no catalog rows are needed)

# Per series s: on/off points toggle every 20-36 minutes, modes move through four values every
# 45-57 minutes, meters add 0.37 a minute; each sampled once a minute at :17.
ROWS_SQL = """
INSERT INTO ts_state_1m
SELECT s, b, 1, b + interval '17 seconds', b + interval '17 seconds', v.s_val, v.s_val, 0,
       CASE WHEN v.s_val IS NULL THEN '{}'::jsonb ELSE jsonb_build_object(v.s_val, 43.0) END,
       v.x, v.x, CASE WHEN v.x IS NOT NULL THEN 0.37::float8 END
FROM generate_series(%(first)s::bigint, %(last)s::bigint) s,
     generate_series(0, 1439) m,
     LATERAL (SELECT %(day)s::timestamptz + m * interval '1 minute' AS b) t,
     LATERAL (SELECT
         CASE WHEN s < %(first)s + %(per)s
              THEN CASE WHEN (m / (20 + s %% 17)) %% 2 = 0 THEN 'true' ELSE 'false' END
              WHEN s < %(first)s + 2 * %(per)s
              THEN (ARRAY['heat', 'cool', 'off', 'fan'])[1 + (m / (45 + s %% 13)) %% 4]
         END AS s_val,
         CASE WHEN s >= %(first)s + 2 * %(per)s
              THEN round((1000 + s %% 100 + m * 0.37)::numeric, 2)::float8 END AS x) v
"""

KIND_SQL = """
SELECT CASE WHEN z.series_id < %(first)s + %(per)s THEN 'on/off'
            WHEN z.series_id < %(first)s + 2 * %(per)s THEN 'mode (text)'
            ELSE 'meter (counter)' END AS kind,
       sum(pg_column_size(z.*))::float8 / sum(z.n_rows) AS bytes_per_row
FROM ts_state_z z GROUP BY 1 ORDER BY 1
"""


def _one(conn: psycopg.Connection, statement: str, args: list[object] | None = None) -> Any:
    row = conn.execute(statement, args).fetchone()
    assert row is not None
    return row[0]


def _median_ms(conn: psycopg.Connection, statement: str, args: list[object], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        conn.execute(statement, args).fetchall()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench state", description=__doc__)
    parser.add_argument("--points", type=int, default=100, help="points of each kind")
    parser.add_argument("--reads", type=int, default=20, help="reads of one point's day")
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    args = parser.parse_args(argv)
    per = args.points
    with fresh_database("traksense_bench_state", keep=args.keep) as conninfo:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(
                "SELECT ts_ensure_partitions('1m', %s, %s::timestamptz + interval '1 day')",
                [DAY, DAY],
            )
            partition = _one(conn, "SELECT ts_state_partition('1m', %s)", [DAY])
            params = {"first": FIRST, "last": FIRST + 3 * per - 1, "per": per, "day": DAY}
            started = time.perf_counter()
            conn.execute(ROWS_SQL, params)
            print(
                f"wrote {3 * per * 1440:,} state rows ({per} points of each kind, one day"
                f" at 1m) in {time.perf_counter() - started:.1f} s",
                flush=True,
            )
            conn.execute(f"VACUUM ANALYZE {partition}")
            rows = _one(conn, f"SELECT count(*) FROM {partition}")
            before = _one(conn, "SELECT pg_total_relation_size(%s)", [partition])
            probe = FIRST + per // 2  # an on/off point
            read = "SELECT * FROM ts_state_stored('1m', %s, %s, %s::timestamptz + interval '1 day')"
            plain_ms = _median_ms(conn, read, [probe, DAY, DAY], args.reads)
            started = time.perf_counter()
            conn.execute("SELECT ts_state_compress('1m', %s)", [DAY])
            seconds = time.perf_counter() - started
            after = _one(conn, "SELECT pg_total_relation_size('ts_state_z')")
            packed_ms = _median_ms(conn, read, [probe, DAY, DAY], args.reads)
            kinds = conn.execute(KIND_SQL, params).fetchall()
            version = _one(conn, "SHOW server_version")
    print(f"PostgreSQL {version}")
    print(f"{'form':<28}{'bytes/row':>10}")
    print(f"{'uncompressed partition':<28}{before / rows:>10.1f}")
    print(f"{'compressed, all points':<28}{after / rows:>10.2f}   ({before / after:.0f}x)")
    for kind, per_row in kinds:
        print(f"{'  ' + kind:<28}{per_row:>10.2f}")
    print(f"compressed {rows:,} rows in {seconds:.2f} s: {rows / seconds:,.0f} rows/s")
    print(
        f"one point's day (1,440 rows), median of {args.reads}: {plain_ms:.2f} ms from the"
        f" table, {packed_ms:.2f} ms from the compressed store"
    )
    return 0
