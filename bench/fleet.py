"""`python -m bench fleet`: a building-management fleet, written and rolled up, beside the floors
plain PostgreSQL sets on the same server in the same run (issue 15).

Workload (shared/DESIGN.md section 9): `--devices` x `--points` numeric series (default 20,000 x 5
= 100,000), one sample per series per minute, `--hours` long (default 1), ending a few minutes
ago. Each minute of the fleet is sent as batches of `--batch` samples (default 10,000: one
minute of 2,000 devices), by `--clients` HTTP clients (default 4) to gunicorn `-w 2`. The first
fleet minute registers the series (the catalog) and is not timed.

Figures, each beside its floor from the same run:

- HTTP ingest, samples/s, beside a text COPY of the same rows into a table with a
  (series_id, ts) primary key, one connection (what `psql \\copy` does);
- raw bytes per sample (ts_measure's partitions with their indexes) beside that table's;
- full 1m materialization of the loaded hours (refresh(), the service's own Python
  orchestration included) beside one `CREATE TABLE AS SELECT ... GROUP BY` of the same rows;
  then 5m and 1h (which read the finer tier), as a share of the 1m time;
- steady state: one more fleet minute, then the 1m refresh (its SQL time, and the CLI's
  `traksense jobs run refresh_1m` wall time with its start-up); five more minutes, then the 5m
  refresh; beside the GROUP BY of the same new rows.

Where: its own database `traksense_bench_fleet` on the server TrakSense uses (DATABASE_URL, or
the embedded PostgreSQL), dropped at the end unless `--keep`.
"""

from __future__ import annotations

import argparse
import http.client
import io
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg
from psycopg.conninfo import make_conninfo

from bench.ingest import stored_size
from bench.server import running_api, server_conninfo

BENCH_DB = "traksense_bench_fleet"
ALIAS = "bench_fleet"
ORIGIN = "timestamptz '2000-01-03 00:00:00+00'"


def _cli(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "traksense", *args],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


def _value(minute: int, series: int) -> float:
    # Sensor-like: two decimals, slowly moving; every tenth point a constant setpoint.
    if series % 10 == 0:
        return 21.5
    return round(20.0 + (series % 97) / 10.0 + (minute % 60) / 100.0, 2)


def _state(minute: int, series: int) -> str:
    # An on/off point (compressor, fan) switching every 7 to 16 minutes.
    return "true" if (minute // (7 + series % 10) + series) % 2 else "false"


class Fleet:
    def __init__(self, devices: int, points: int, boolean_every: int = 0) -> None:
        self.devices = [str(uuid.uuid4()) for _ in range(devices)]
        self.points = [[str(uuid.uuid4()) for _ in range(points)] for _ in range(devices)]
        # Every boolean_every-th series is an on/off point with state rollups (0: none).
        self.boolean_every = boolean_every

    def value(self, minute: int, series: int) -> str:
        if self.boolean_every and series % self.boolean_every == self.boolean_every - 1:
            return _state(minute, series)
        return str(_value(minute, series))

    @property
    def size(self) -> int:
        return len(self.devices) * len(self.points[0])

    def bodies(self, at: datetime, minute: int, batch: int) -> Iterator[tuple[bytes, int]]:
        """One fleet minute as request bodies of `batch` samples."""
        stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
        items: list[str] = []
        n = 0
        for d, device in enumerate(self.devices):
            for point in self.points[d]:
                items.append(
                    f'{{"device_id":"{device}","point_id":"{point}","ts":"{stamp}",'
                    f'"value":{self.value(minute, n)}}}'
                )
                n += 1
                if len(items) == batch:
                    yield ('{"samples":[' + ",".join(items) + "]}").encode(), len(items)
                    items = []
        if items:
            yield ('{"samples":[' + ",".join(items) + "]}").encode(), len(items)


def send(
    port: int, key: str, work: list[tuple[bytes, int]], clients: int
) -> tuple[float, list[float]]:
    """POST every body with `clients` connections; (wall seconds, per-request latencies)."""
    lock = threading.Lock()
    queue = iter(work)
    latencies: list[float] = []
    errors: list[str] = []
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        try:
            while not errors:
                with lock:
                    item = next(queue, None)
                if item is None:
                    return
                began = time.perf_counter()
                conn.request("POST", "/data/points", body=item[0], headers=headers)
                response = conn.getresponse()
                payload = response.read()
                took = time.perf_counter() - began
                if response.status != 200:
                    errors.append(f"HTTP {response.status}: {payload[:300]!r}")
                    return
                if int(orjson.loads(payload)["accepted"]) != item[1]:
                    errors.append(f"accepted {payload!r} of {item[1]}")
                    return
                with lock:
                    latencies.append(took)
        finally:
            conn.close()

    began = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(errors[0])
    return time.perf_counter() - began, latencies


def copy_floor(conn: psycopg.Connection[Any], lo: datetime, hi: datetime) -> tuple[float, int, int]:
    """Text COPY of ts_measure's rows in [lo, hi) into a table with a (series_id, ts) primary
    key; (seconds, bytes of the table, rows). The rows are rendered before the clock starts."""
    buf = io.BytesIO()
    with conn.cursor().copy(
        "COPY (SELECT series_id, ts, v_num FROM ts_measure WHERE ts >= %s AND ts < %s"
        " ORDER BY ts, series_id) TO STDOUT",
        [lo, hi],
    ) as out:
        for chunk in out:
            buf.write(chunk)
    conn.execute(
        "CREATE TABLE bench_floor (series_id bigint, ts timestamptz, v float8,"
        " PRIMARY KEY (series_id, ts))"
    )
    conn.commit()
    data = buf.getvalue()
    began = time.perf_counter()
    with conn.cursor().copy("COPY bench_floor FROM STDIN") as copy:
        for i in range(0, len(data), 1 << 20):
            copy.write(data[i : i + (1 << 20)])
    conn.commit()
    seconds = time.perf_counter() - began
    row = conn.execute(
        "SELECT pg_total_relation_size('bench_floor'), (SELECT count(*) FROM bench_floor)"
    ).fetchone()
    assert row is not None
    conn.execute("DROP TABLE bench_floor")
    conn.commit()
    return seconds, int(row[0]), int(row[1])


def group_by_floor(conn: psycopg.Connection[Any], lo: datetime, hi: datetime) -> float:
    """One GROUP BY of ts_measure's [lo, hi) into a new table: the floor of a 1m refresh."""
    conn.execute("DROP TABLE IF EXISTS bench_floor_1m")
    conn.commit()
    began = time.perf_counter()
    conn.execute(
        "CREATE TABLE bench_floor_1m AS SELECT series_id, date_bin('1 minute', ts, "
        f"{ORIGIN}) AS bucket, sum(v_num) AS v_sum, min(v_num) AS v_min, max(v_num) AS v_max,"
        " count(*) AS n FROM ts_measure WHERE ts >= %s AND ts < %s AND v_num IS NOT NULL"
        " GROUP BY 1, 2",
        [lo, hi],
    )
    conn.commit()
    seconds = time.perf_counter() - began
    conn.execute("DROP TABLE bench_floor_1m")
    conn.commit()
    return seconds


def refresh_seconds(tier: str, end: datetime | None = None) -> tuple[float, str]:
    from traksense.rollups.refresh import refresh

    stats = refresh(tier, end=end, using=ALIAS)
    ways = ",".join(sorted(set(stats.strategies)))
    return stats.seconds, f"{stats.chunks} chunk(s) ({ways}), {stats.rows_written:,} rows"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench fleet", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--devices", type=int, default=20_000)
    parser.add_argument("--points", type=int, default=5)
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    parser.add_argument(
        "--boolean-every",
        type=int,
        default=0,
        help="every Nth series is an on/off point (state rollups, issue 19); 0: none",
    )
    parser.add_argument(
        "--counter-every",
        type=int,
        default=0,
        help="every Nth numeric series is marked as a counter (delta, issue 19); 0: none",
    )
    parser.add_argument(
        "--soak", action="store_true", help="steady state of --series for --minutes (bench/soak.py)"
    )
    parser.add_argument("--series", type=int, default=1_000_000, help="--soak: series")
    parser.add_argument("--minutes", type=float, default=15.0, help="--soak: wall minutes")
    args = parser.parse_args(argv)
    if args.soak:
        from bench import soak

        return soak.run(args)
    minutes = max(1, int(round(args.hours * 60)))

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "traksense.settings")
    import django

    django.setup()
    from django.conf import settings

    server = server_conninfo()
    conninfo = make_conninfo(**server, dbname=BENCH_DB)
    env = {**os.environ, "DATABASE_URL": conninfo, "SCHEDULER_ENABLED": "false"}
    with psycopg.connect(make_conninfo(**server, dbname="postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{BENCH_DB}"')
    _cli(["migrate", "-v", "0"], env)
    tenant = _cli(["tenant", "create", "bench-fleet"], env)
    # The bench measures the service, not a tenant's ingest limit (tenancy/limits).
    _cli(["tenant", "limits", tenant, "--ingest-rate", "0", "--read-concurrency", "0"], env)
    key = _cli(["apikey", "create", "--tenant", tenant], env)
    settings.DATABASES[ALIAS] = {**settings.DATABASES["default"], "NAME": BENCH_DB}
    if settings.DATABASES[ALIAS].get("HOST") is None:
        settings.DATABASES[ALIAS]["HOST"] = server.get("host")

    fleet = Fleet(args.devices, args.points, args.boolean_every)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    # [start, end): the timed hours; then 1 + 5 steady-state minutes, all before now - 1 min.
    end = now - timedelta(minutes=8)
    start = end - timedelta(minutes=minutes)
    warm = start - timedelta(minutes=1)
    conn = psycopg.connect(conninfo)
    version = conn.execute("SHOW server_version").fetchone()
    print(
        f"PostgreSQL {version[0] if version else '?'}, {BENCH_DB}: {args.devices:,} devices x"
        f" {args.points} points = {fleet.size:,} series, once a minute for {minutes} min"
        f" ({fleet.size * minutes:,} samples), batches of {args.batch:,},"
        f" {args.clients} clients, gunicorn -w {args.workers}",
        flush=True,
    )

    with running_api(env, args.workers, timeout=600) as port:
        send(port, key, list(fleet.bodies(warm, -1, args.batch)), args.clients)
        # The first minute created the series; the catalog is analyzed as autovacuum would.
        if args.counter_every:
            conn.execute(
                "UPDATE ts_series SET counter = true"
                " WHERE kind = 'numeric' AND series_id %% %s = 0",
                [args.counter_every],
            )
        conn.execute("ANALYZE ts_series")
        conn.commit()
        kinds = conn.execute(
            "SELECT count(*) FILTER (WHERE kind = 'boolean'), count(*) FILTER (WHERE counter)"
            " FROM ts_series"
        ).fetchone()
        assert kinds is not None
        print(f"state series: {kinds[0]:,} on/off, {kinds[1]:,} counters", flush=True)
        work = [
            b
            for m in range(minutes)
            for b in fleet.bodies(start + timedelta(minutes=m), m, args.batch)
        ]
        total = sum(n for _b, n in work)
        http_seconds, latencies = send(port, key, work, args.clients)
        del work
    http_rate = total / http_seconds
    latencies.sort()
    stored, rows = stored_size(conninfo)
    copy_seconds, floor_bytes, floor_rows = copy_floor(conn, start, end)
    copy_rate = floor_rows / copy_seconds
    print()
    print(f"{'':44}{'TrakSense':>14}{'floor':>14}{'ratio':>8}")
    print(
        f"{'ingest, samples/s (floor: text COPY, pk)':44}{http_rate:>14,.0f}{copy_rate:>14,.0f}"
        f"{http_rate / copy_rate:>8.2f}"
    )
    print(
        f"{'  batch latency p50 / p99, ms':44}{latencies[len(latencies) // 2] * 1e3:>14.0f}"
        f"{latencies[int(len(latencies) * 0.99)] * 1e3:>14.0f}"
    )
    print(
        f"{'raw bytes/sample':44}{stored / rows:>14.1f}{floor_bytes / floor_rows:>14.1f}"
        f"{stored / rows / (floor_bytes / floor_rows):>8.2f}",
        flush=True,
    )

    conn.autocommit = True
    conn.execute("VACUUM (ANALYZE) ts_measure")
    conn.autocommit = False
    floor_1m = group_by_floor(conn, warm, end)
    full_1m, how_1m = refresh_seconds("1m", end)
    print(
        f"{'full 1m materialization, s (GROUP BY)':44}{full_1m:>14.2f}{floor_1m:>14.2f}"
        f"{full_1m / floor_1m:>8.2f}   {how_1m}"
    )
    full_5m, how_5m = refresh_seconds("5m", end)
    full_1h, how_1h = refresh_seconds("1h", end.replace(minute=0))
    print(
        f"{'full 5m + 1h, s (share of the 1m time)':44}{full_5m + full_1h:>14.2f}{'':>14}"
        f"{(full_5m + full_1h) / full_1m:>8.2f}   5m {full_5m:.2f} s, {how_5m}; 1h {full_1h:.2f} s"
    )

    with running_api(env, args.workers, timeout=600) as port:
        send(port, key, list(fleet.bodies(end, minutes, args.batch)), args.clients)
        step_floor = group_by_floor(conn, end, end + timedelta(minutes=1))
        step_1m, how = refresh_seconds("1m", end + timedelta(minutes=1))
        print(
            f"{'1m refresh after one fleet minute, s':44}{step_1m:>14.3f}{step_floor:>14.3f}"
            f"{step_1m / step_floor:>8.2f}   {how}"
        )
        for m in range(1, 6):
            send(
                port,
                key,
                list(fleet.bodies(end + timedelta(minutes=m), minutes + m, args.batch)),
                args.clients,
            )
        # The CLI, as the scheduler's job would run it (process start-up included).
        began = time.perf_counter()
        _cli(["refresh", "--tier", "1m", "--end", (end + timedelta(minutes=6)).isoformat()], env)
        cli_1m = time.perf_counter() - began
        print(f"{'  the same, five minutes, by the CLI, s':44}{cli_1m:>14.3f}")
        step_5m, how = refresh_seconds("5m", end + timedelta(minutes=5))
        print(
            f"{'5m refresh after five fleet minutes, s':44}{step_5m:>14.3f}{'':>14}{'':>8}   {how}"
        )

    conn.close()
    from django.db import connections

    connections[ALIAS].close()
    if not args.keep:
        with psycopg.connect(make_conninfo(**server, dbname="postgres"), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
    return 0
