"""`python -m bench storage`: what one series polled once a minute costs on disk over its whole
retention, per tier, at the fleet shape (shared/DESIGN.md §9, issue 18).

Each tier's steady state is built as whole partitions of that tier (a new database's widths,
migration 0008: raw and 1m 1 day, 5m 7 days, 1h 28 days) of fleet-shape series, stored
uncompressed, measured, compressed by `ts_compress_partition()` (the compression jobs' function)
and measured again:

- raw: `--series` series (default 10,000), one partition of samples, one a minute, exactly on
  the minute, as pollers stamp them;
- 1m: `--rollup-series` (default 1,000) series, two partitions of 1m rows of such samples (n = 1);
- 5m: the same series, two partitions of 5m rows (n = 5), aggregated in SQL as the refresh does;
- 1h: a fifth of them, two partitions of 1h rows (n = 60).

Values (`ts_series.kind`, per series by `series % 10`): 0–3 a temperature with one decimal (a
daily wave, a sensor's noise of ±0.15, as a 0.1-resolution sensor reports it), 4–6 a reading
with two decimals (humidity, pressure, current: a wave and ±0.1 of noise), 7–8 a setpoint
(constant, changed every 6 hours), 9 a boolean status (raw only: rollups hold numeric points).
Figures from the same server and run:

- bytes/row before: `pg_total_relation_size` (heap, primary key, BRIN, TOAST, maps) of the
  tier's partitions after VACUUM ANALYZE, over the rows; after: the same for the compressed
  partitions. Per value class: the compressed row's `pg_column_size` (arrays as stored, TOAST
  compressed), which leaves out the table's fixed pages and index;
- reads: raw one day, 1m one day and two days, of one series through the API's read functions
  (`ts_read_raw`, `ts_read_rollup_1m`), series 1 compressed beside series 2 (the same value class)
  restored uncompressed, their runs taking turns, median of `--repeat`, in the database | fetched
  by a binary client;
- per series over the retention: rows a day × (days uncompressed × bytes/row before + days
  compressed × bytes/row after), where a tier's data is uncompressed from now back to the end of
  its last compressed partition (on average `COMPRESS_<TIER>_AFTER_DAYS` + half a partition),
  and kept until its partition ends past the retention (on average the retention + half a
  partition); then the same with the 1m and 5m tiers compressed after 2 days instead of
  shared/DESIGN.md's 7 (COMPRESS_1M_AFTER_DAYS=2, COMPRESS_5M_AFTER_DAYS=2); beside
  TimescaleDB's ~25 MB (issue 18: its measured 245 B per raw sample and 32.8 B per compressed
  1m row, the seed's settings).

Where: a database of its own, `traksense_bench_storage`, created on the server TrakSense uses
(DATABASE_URL, or the embedded PostgreSQL under TRAKSENSE_HOME) and dropped at the end (`--keep`
keeps it).
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from bench.compression import _interleaved_ms
from bench.server import fresh_database
from traksense.rollups.storage import held_days

BENCH_DB = "traksense_bench_storage"
BENCH_TENANT = "0b0e0e0e-0000-4000-8000-00000000000d"
# Monday 2000-01-03: a start every tier's partitions align with.
ORIGIN = datetime(2000, 1, 3, tzinfo=UTC)
# Tier, bucket minutes (0: raw).
TIERS = (("raw", 0), ("1m", 1), ("5m", 5), ("1h", 60))
# Reads compared, compressed (series 1) beside uncompressed (series 2, restored), runs taking
# turns: one day of raw samples, and of 1m rows one day and the two days loaded.
READS = {
    "raw": ("ts_read_raw", (1,)),
    "1m": ("ts_read_rollup_1m", (1, 2)),
}
TARGET = {"raw": 3.0, "1m": 2.5, "5m": 5.0, "1h": 8.0}
TARGET_SERIES_MB = 3.0
TIMESCALE_SERIES_MB = 25.0
CLASSES = ("temperature, 1 decimal", "reading, 2 decimals", "setpoint", "boolean")

# One sample of series s at minute m (minutes since the epoch): the value classes above.
SAMPLE = """
    CASE WHEN s % 10 < 4
         THEN round((21 + 2 * sin(2 * pi() * m / 1440 + s * 0.7)
                     + (random() - 0.5) * 0.3)::numeric, 1)::float8
         WHEN s % 10 < 7
         THEN round((45 + 5 * sin(2 * pi() * m / 1440 + s * 0.7)
                     + (random() - 0.5) * 0.2)::numeric, 2)::float8
         WHEN s % 10 < 9 THEN 20 + (m / 360 + s) % 3
    END
"""


def _minute(t: datetime) -> int:
    return int(t.timestamp()) // 60


def _load(
    conn: psycopg.Connection[Any], tier: str, width: int, series: int, start: datetime, days: int
) -> None:
    """Whole partitions of `tier` for series 1..`series`, in the order a writer leaves them
    (by series, then time)."""
    end = start + timedelta(days=days)
    conn.execute("SELECT ts_ensure_partitions(%s, %s, %s)", [tier, start, end])
    m0, m1 = _minute(start), _minute(end)
    if tier == "raw":
        conn.execute(
            f"""INSERT INTO ts_measure (series_id, ts, v_num, v_bool)
                SELECT s, to_timestamp(m * 60), CASE WHEN s % 10 < 9 THEN {SAMPLE} END,
                       CASE WHEN s % 10 = 9 THEN (m / 37 + s) % 2 = 0 END
                FROM generate_series(1, {series}) s, generate_series({m0}::bigint, {m1} - 1) m"""
        )
        conn.execute("DELETE FROM ts_invalidation")
        return
    numeric = "s % 10 < 9"
    conn.execute(
        f"""INSERT INTO {"ts_measure_" + tier} (series_id, bucket, v_sum, v_min, v_max, n)
            SELECT s, to_timestamp(b * 60), sum(v), min(v), max(v), count(*)
            FROM (SELECT s, m - m % {width} AS b, {SAMPLE} AS v
                  FROM generate_series(1, {series}) s, generate_series({m0}::bigint, {m1} - 1) m
                  WHERE {numeric}) x
            GROUP BY s, b ORDER BY s, b"""
    )


def _sizes(conn: psycopg.Connection[Any], tier: str, start: datetime) -> tuple[int, int]:
    """Rows and bytes of the tier's partitions from `start` on."""
    relation = "ts_measure" if tier == "raw" else f"ts_measure_{tier}"
    row = conn.execute(
        f"""SELECT (SELECT count(*) FROM {relation}),
                   sum(pg_total_relation_size(p.name::regclass))
            FROM ts_partition p WHERE p.tier = %s AND p.lo >= %s""",
        [tier, start],
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1] or 0)


def _compressed(conn: psycopg.Connection[Any], tier: str) -> tuple[int, int, dict[int, float]]:
    """Rows and bytes of the tier's compressed store, and per value class the stored bytes of
    its rows over their count."""
    relation = "ts_measure_z" if tier == "raw" else f"ts_measure_{tier}_z"
    row = conn.execute(
        f"SELECT sum(n_rows), pg_total_relation_size('{relation}'::regclass)"
        f" + (SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_inherits i"
        f"    JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = '{relation}'::regclass)"
        f" FROM {relation}"
    ).fetchone()
    assert row is not None
    by_class = dict(
        conn.execute(
            f"""SELECT CASE WHEN series_id % 10 < 4 THEN 0 WHEN series_id % 10 < 7 THEN 1
                            WHEN series_id % 10 < 9 THEN 2 ELSE 3 END,
                       sum(pg_column_size(z.*))::float8 / sum(n_rows)
                FROM {relation} z GROUP BY 1"""
        ).fetchall()
    )
    return int(row[0] or 0), int(row[1] or 0), by_class


def _reads(conn: psycopg.Connection[Any], tier: str, start: datetime, repeat: int) -> list[str]:
    """Series 1 (compressed) beside series 2 restored uncompressed, through the read function."""
    function, spans = READS[tier]
    conn.execute(
        "SELECT ts_decompress_segment(%s, 2, seg_start) FROM"
        f" {'ts_measure_z' if tier == 'raw' else 'ts_measure_1m_z'} WHERE series_id = 2",
        [tier],
    )
    out = []
    # The read functions answer only inside a transaction bound to the series' tenant.
    conn.execute("BEGIN")
    conn.execute("SELECT ts_bind_tenant(%s)", [BENCH_TENANT])
    for days in spans:
        params = {"s": start, "e": start + timedelta(days=days)}
        queries = [
            (f"SELECT * FROM {function}({sid}, %(s)s, %(e)s, 100000)", params) for sid in (1, 2)
        ]
        counts = [len(conn.execute(q, p).fetchall()) for q, p in queries]
        assert counts[0] == counts[1] == days * 1440, (tier, days, counts)
        (zdb, zfetch), (pdb, pfetch) = _interleaved_ms(conn, queries, repeat)
        out.append(
            f"{tier} {days} d: compressed {zdb:.2f} | {zfetch:.2f} ms, uncompressed"
            f" {pdb:.2f} | {pfetch:.2f} ms ({zdb / pdb:.2f}x | {zfetch / pfetch:.2f}x)"
        )
    conn.execute("COMMIT")
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench storage",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--series", type=int, default=10_000, help="raw series (one day each)")
    parser.add_argument("--rollup-series", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=21)
    parser.add_argument("--keep", action="store_true", help=f"keep the {BENCH_DB} database")
    args = parser.parse_args(argv)

    with (
        fresh_database(BENCH_DB, keep=args.keep) as conninfo,
        psycopg.connect(conninfo, autocommit=True) as conn,
    ):
        count = max(args.series, args.rollup_series)
        conn.execute(
            "INSERT INTO ts_series (series_id, tenant_id, device_id, point_id, kind)"
            " OVERRIDING SYSTEM VALUE SELECT g, %s, gen_random_uuid(), gen_random_uuid(),"
            " CASE WHEN g %% 10 = 9 THEN 'boolean' ELSE 'numeric' END"
            " FROM generate_series(1, %s) g",
            [BENCH_TENANT, count],
        )
        version = conn.execute("SHOW server_version").fetchone()
        assert version is not None
        print(
            f"PostgreSQL {version[0]}, database {BENCH_DB}: raw {args.series} series,"
            f" 1m/5m {args.rollup_series} series, 1h {max(1, args.rollup_series // 5)}"
            " series, one sample a minute",
            flush=True,
        )
        start = ORIGIN + timedelta(days=364 * 26)  # 2025-12-29, a Monday, 91-day aligned
        conn.execute("SET max_parallel_workers_per_gather = 0")  # as the read functions
        widths: dict[str, float] = dict(
            conn.execute(
                "SELECT tier, extract(epoch FROM partition_width) / 86400 FROM ts_tier"
            ).fetchall()
        )
        results, reads = [], []
        for tier, width in TIERS:
            series = {"raw": args.series, "1h": max(1, args.rollup_series // 5)}.get(
                tier, args.rollup_series
            )
            partition_days = float(widths[tier])
            t0 = time.perf_counter()
            _load(
                conn,
                tier,
                width,
                series,
                start,
                int(partition_days * (1 if tier == "raw" else 2)),
            )
            relation = "ts_measure" if tier == "raw" else f"ts_measure_{tier}"
            if tier != "raw":  # materialized up to the end of what was loaded
                conn.execute(
                    "UPDATE ts_tier SET watermark = %s WHERE tier = %s",
                    [start + timedelta(days=2 * partition_days), tier],
                )
            conn.execute(f"VACUUM ANALYZE {relation}")
            rows, before = _sizes(conn, tier, start)
            loaded = time.perf_counter() - t0
            t0 = time.perf_counter()
            for (name,) in conn.execute(
                "SELECT name FROM ts_partition WHERE tier = %s AND lo >= %s ORDER BY lo",
                [tier, start],
            ).fetchall():
                conn.execute("SELECT ts_compress_partition(%s)", [name])
            seconds = time.perf_counter() - t0
            zrows, after, by_class = _compressed(conn, tier)
            assert zrows == rows, (tier, zrows, rows)
            b_before, b_after = before / rows, after / rows
            results.append((tier, width, partition_days, b_before, b_after))
            classes = ", ".join(f"{CLASSES[c]} {b:.2f}" for c, b in sorted(by_class.items()))
            print(
                f"{tier:>3}: {rows:,} rows (loaded in {loaded:.0f} s), {b_before:.1f} ->"
                f" {b_after:.2f} B/row (target <= {TARGET[tier]}:"
                f" {'yes' if b_after <= TARGET[tier] else 'NO'}), {before / after:.1f}x,"
                f" compressed in {seconds:.1f} s ({rows / seconds:,.0f} rows/s);"
                f" stored B/row by value class: {classes}",
                flush=True,
            )
            if tier in READS:
                reads += _reads(conn, tier, start, args.repeat)
        print(
            "\nreads of one series, in the database | fetched (median of"
            f" {args.repeat}, runs taking turns):"
        )
        for line in reads:
            print(f"  {line}")

        from traksense import settings  # noqa: PLC0415  (the environment's policies)

        for label, ages in (
            ("default policies", settings.COMPRESS_AFTER_DAYS),
            (
                "1m and 5m compressed after 2 days",
                {**settings.COMPRESS_AFTER_DAYS, "1m": 2, "5m": 2},
            ),
        ):
            print(f"\nper series polled once a minute, over its retention ({label}):")
            total = 0.0
            for tier, width, partition_days, b_before, b_after in results:
                per_day = 1440 / (width or 1)
                plain, packed = held_days(
                    settings.RETENTION_DAYS[tier], ages.get(tier, 0), partition_days
                )
                mb = per_day * (plain * b_before + packed * b_after) / 1e6
                total += mb
                print(
                    f"  {tier:>3}: {per_day:,.0f} rows/day, {plain:.1f} d uncompressed x"
                    f" {b_before:.1f} B + {packed:.1f} d compressed x {b_after:.2f} B"
                    f" = {mb:.2f} MB"
                )
            print(
                f"  total {total:.2f} MB a series (target <= {TARGET_SERIES_MB}:"
                f" {'yes' if total <= TARGET_SERIES_MB else 'NO'}); TimescaleDB ~"
                f"{TIMESCALE_SERIES_MB:.0f} MB; {total * 100_000 / 1e6:.2f} TB for 100,000"
                f" series, {total * 1_000_000 / 1e6:.1f} TB for 1,000,000"
            )
    return 0
