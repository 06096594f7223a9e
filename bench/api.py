"""`python -m bench api`: GET /data/points over HTTP beside the same SQL fetched directly.

One series of one tenant in a database of its own (`traksense_bench_api`, dropped and recreated
on the server TrakSense uses: DATABASE_URL, or the embedded one under TRAKSENSE_HOME), loaded
with binary COPY as the owner straight into the tiers:

- raw: 1 day at 1 Hz (86,400 samples), ending at the current hour;
- 1m: 30 days (43,200 buckets), 1h: 30 days (720 buckets), same end; watermarks at that end, so
  the views read materialized rows (their real-time tail is empty, as right after a refresh).

Cases, each measured as HTTP latency (sequential, one client, the cases taking turns), HTTP
throughput (bounded count, `--concurrency` clients) against gunicorn with 2 workers started
here, and as the same SQL run directly with a psycopg binary cursor as app_user (rows fetched,
and the page statement the API runs, JSON rendered by PostgreSQL):

    30d@1m           agg=1m over 30 days            43,200 rows   target p50 <= 60 ms
    30d@1h           agg=1h over 30 days               720 rows   target p50 <= 5 ms, >= 700 req/s
    1d raw           agg=raw over 1 day             86,400 rows   target p50 <= 100 ms
    30d raw->1m      agg=raw over 30 days: degrades to 1m, 43,200 rows
    30d@1m late      30d@1m of a twin series with 100 late minutes pending refresh, recomputed
    30d@1h late      on the fly (read-your-writes)         target p50 <= 1.3x the same without

The API reads the two 43,200-row rollup pages in two halves at once, on two connections
(READ_SPLIT_BUCKETS, docs/api.md); the direct "SQL json" figure is the page statement run once
over the whole range.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import math
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import orjson
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.types.json import Jsonb

from bench.server import running_api, server_conninfo

BENCH_DB = "traksense_bench_api"
DEVICE = "0b0e0e0e-0000-4000-8000-000000000001"
POINT = "0b0e0e0e-0000-4000-8000-000000000002"
ON_OFF = "0b0e0e0e-0000-4000-8000-000000000003"  # a boolean point with 30 days of 1m state rows
# POINT's twin, with LATE minutes of late data pending refresh (read-your-writes, issue 16).
PENDING = "0b0e0e0e-0000-4000-8000-000000000004"
LATE = 100


@dataclass(frozen=True)
class Case:
    name: str
    agg: str
    tier: str  # the tier that answers
    days: int
    rows: int
    target: str
    point: str = POINT
    kind: str = "numeric"


CASES = (
    Case("30d@1m", "1m", "1m", 30, 43_200, "p50 <= 60 ms"),
    Case("30d@1h", "1h", "1h", 30, 720, "p50 <= 5 ms, >= 700 req/s"),
    Case("1d raw", "raw", "raw", 1, 86_400, "p50 <= 100 ms"),
    Case("30d raw->1m", "raw", "1m", 30, 43_200, "(degrades)"),
    # Issue 19: calendar days summed from 1h, and an on/off point's state rows.
    Case("30d 1d@1h", "1d", "1h", 30, 30, "(calendar days, UTC)"),
    Case("30d@1m on/off", "1m", "1m", 30, 43_200, "(state rows)", ON_OFF, "boolean"),
    # Issue 16: the same reads with 100 late minutes pending, recomputed on the fly.
    Case("30d@1m late", "1m", "1m", 30, 43_200, "p50 <= 1.3x 30d@1m", PENDING),
    Case("30d@1h late", "1h", "1h", 30, 720, "p50 <= 1.3x 30d@1h", PENDING),
)


def _run(cmd: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    return done.stdout.strip()


def prepare(server: dict[str, Any], env: dict[str, str]) -> tuple[str, str]:
    """Fresh database, migrated; a tenant and its key. Returns (tenant id, key)."""
    with psycopg.connect(make_conninfo(**server, dbname="postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{BENCH_DB}"')
    cli = [sys.executable, "-m", "traksense"]
    _run([*cli, "migrate", "-v", "0"], env)
    tenant = _run([*cli, "tenant", "create", "bench-api"], env).splitlines()[-1]
    key = _run([*cli, "apikey", "create", "--tenant", tenant], env).splitlines()[-1]
    return tenant, key


def _new_series(conn: psycopg.Connection[Any], tenant: str, point: str, kind: str) -> int:
    row = conn.execute(
        "INSERT INTO ts_series (tenant_id, device_id, point_id, kind)"
        " VALUES (%s, %s, %s, %s) RETURNING series_id",
        [tenant, DEVICE, point, kind],
    ).fetchone()
    assert row is not None
    return int(row[0])


def load(conninfo: str, tenant: str, end: datetime) -> None:
    """COPY the series' raw day, 30 days of 1m and of 1h, as the owner."""
    month = end - timedelta(days=30)
    day = end - timedelta(days=1)
    with psycopg.connect(conninfo) as conn:
        # POINT, its twin with late data, and the on/off point (its state rows below).
        sid, pending, flag = (
            _new_series(conn, tenant, point, kind)
            for point, kind in ((POINT, "numeric"), (PENDING, "numeric"), (ON_OFF, "boolean"))
        )
        ids = [sid, pending]
        for tier in ("raw", "1m", "5m", "1h"):
            conn.execute("SELECT ts_ensure_partitions(%s, %s, %s)", [tier, month, end])
        # The late minutes: spread over the month, one every 7 hours and 12 minutes.
        late = [month + timedelta(minutes=432 * k + 17) for k in range(LATE)]
        with conn.cursor().copy(
            "COPY ts_measure (series_id, ts, v_num) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["int8", "timestamptz", "float8"])
            for i in range(86_400):
                copy.write_row((sid, day + timedelta(seconds=i), 20.0 + math.sin(i / 600.0)))
            for minute in late:
                for i in range(60):
                    copy.write_row((pending, minute + timedelta(seconds=i), 21.5))
        buckets = (
            ("ts_measure_1m", 60, 43_200),
            ("ts_measure_5m", 300, 8_640),
            ("ts_measure_1h", 3600, 720),
        )
        for (table, width, count), series in itertools.product(buckets, ids):
            per = width  # samples per bucket at 1 Hz
            with conn.cursor().copy(
                f"COPY {table} (series_id, bucket, v_sum, v_min, v_max, n)"
                " FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.set_types(["int8", "timestamptz", "float8", "float8", "float8", "int4"])
                for b in range(count):
                    avg = 20.0 + math.sin(b * width / 600.0)
                    copy.write_row(
                        (
                            series,
                            month + timedelta(seconds=width * b),
                            avg * per,
                            avg - 1,
                            avg + 1,
                            per,
                        )
                    )
        # The on/off point: one sample a minute, on for 15 minutes, off for 15.
        with conn.cursor().copy(
            "COPY ts_state_1m (series_id, bucket, n, t_first, t_last, s_first, s_last, changes,"
            " time_in) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(
                [
                    "int8",
                    "timestamptz",
                    "int4",
                    "timestamptz",
                    "timestamptz",
                    "text",
                    "text",
                    "int4",
                    "jsonb",
                ]
            )
            for b in range(43_200):
                at = month + timedelta(minutes=b)
                state = "true" if (b // 15) % 2 == 0 else "false"
                copy.write_row((flag, at, 1, at, at, state, state, 0, Jsonb({})))
        # Everything up to `end` counts as materialized; the triggers' invalidations are moot.
        conn.execute("UPDATE ts_tier SET watermark = %s WHERE tier <> 'raw'", [end])
        conn.execute("DELETE FROM ts_invalidation")
        # PENDING's late minutes, as a late batch below the thresholds would have logged them.
        conn.execute(
            "INSERT INTO ts_invalidation (tier, series_id, bucket) SELECT '1m', %s, unnest(%s)",
            [pending, late],
        )
    # Steady state after autovacuum: statistics, visibility map and BRIN summaries up to date.
    # (Without it the real-time branch's BRIN scan reads every unsummarized page of today's raw
    # partition: about 6 ms per request here.)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(
            "VACUUM (ANALYZE) ts_series, ts_measure, ts_measure_1m, ts_measure_5m, ts_measure_1h,"
            " ts_state_1m, ts_invalidation"
        )


def _query_string(case: Case, end: datetime) -> str:
    start = end - timedelta(days=case.days)
    return urlencode(
        {
            "device_id": DEVICE,
            "point_id": case.point,
            "start": start.isoformat(),
            "end": end.isoformat(),
            "agg": case.agg,
        }
    )


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _timed(fn: Callable[[], object], count: int) -> list[float]:
    times = []
    for _ in range(count):
        began = time.perf_counter()
        fn()
        times.append((time.perf_counter() - began) * 1000)
    return times


class Client:
    """A minimal HTTP/1.1 GET client on a raw socket.

    The load generator shares the server's two cores, so it should cost as little as it can:
    http.client parses headers into email.Message objects and buffers through BufferedReader,
    several times the CPU of sending one prepared request and reading its answer. One
    connection per request, as the sync workers the targets were first measured on allowed;
    keep_alive=True keeps one connection per thread, as a browser or Grafana does."""

    def __init__(self, port: int, key: str, keep_alive: bool = False) -> None:
        self.port = port
        self.key = key
        self.keep_alive = keep_alive
        self._local = threading.local()

    def get(self, path: str) -> bytes:
        if not self.keep_alive:
            with socket.create_connection(("127.0.0.1", self.port), timeout=60) as fresh:
                return self._exchange(fresh, path, "Connection: close\r\n")
        sock: socket.socket | None = getattr(self._local, "sock", None)
        if sock is not None:
            try:
                return self._exchange(sock, path, "")
            except (OSError, RuntimeError):
                sock.close()  # closed by the server while idle (keep-alive timeout): reconnect
        self._local.sock = socket.create_connection(("127.0.0.1", self.port), timeout=60)
        return self._exchange(self._local.sock, path, "")

    def _exchange(self, sock: socket.socket, path: str, extra: str) -> bytes:
        request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {self.key}\r\n"
            f"{extra}\r\n"
        ).encode()
        sock.sendall(request)
        data = bytearray()
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                raise RuntimeError(f"GET {path}: connection closed before the headers")
            data += chunk
        end = data.index(b"\r\n\r\n") + 4
        head = bytes(data[:end]).lower()
        # Every answer asked for here carries Content-Length (only CSV is streamed).
        length = re.search(rb"\r\ncontent-length: *(\d+)", head)
        if length is None:
            raise RuntimeError(f"GET {path}: no Content-Length in {head!r}")
        # Read straight into a buffer of the final size: no copies.
        body = bytearray(int(length.group(1)))
        got = len(data) - end
        body[:got] = data[end:]
        view = memoryview(body)
        while got < len(body):
            n = sock.recv_into(view[got:])
            if not n:
                raise RuntimeError(f"GET {path}: body cut at {got} bytes")
            got += n
        if head[9:12] != b"200":
            raise RuntimeError(f"GET {path} -> {head[9:12].decode()}: {bytes(body[:300])!r}")
        return bytes(body)


def throughput(
    request: Callable[[], object], total: int, concurrency: int, cap: float = math.inf
) -> float:
    """Requests per second over `total` calls of `request` from `concurrency` threads, stopping
    early after `cap` seconds."""
    lock = threading.Lock()
    issued = 0
    done = 0
    deadline = time.perf_counter() + cap

    def worker() -> None:
        nonlocal issued, done
        while True:
            with lock:
                if issued >= total or time.perf_counter() > deadline:
                    return
                issued += 1
            request()
            with lock:
                done += 1

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return done / (time.perf_counter() - began)


def direct(conninfo: str, tenant: str, case: Case, end: datetime, count: int) -> dict[str, float]:
    """The case's SQL run directly as app_user: plain rows (binary cursor), and the API's page
    statement (JSON rendered by PostgreSQL). Milliseconds, p50."""
    from traksense.db.context import BY_TENANT_SQL, RUNTIME_ROLE
    from traksense.points import queries

    start = end - timedelta(days=case.days)
    calendar = queries.Calendar("day", "UTC") if case.agg == "1d" else None
    params = queries.page_params(0, start, end, 100_000, calendar)
    out: dict[str, float] = {}
    with psycopg.connect(conninfo, options="-c TimeZone=UTC") as conn:
        row = conn.execute(
            "SELECT series_id FROM ts_series WHERE device_id = %s AND point_id = %s",
            [DEVICE, case.point],
        ).fetchone()
        assert row is not None
        params["series"] = row[0]
        # End the lookup's transaction: each run below is then a transaction of its own, not a
        # savepoint of this one (whose SET LOCAL ROLE would outlive the run).
        conn.commit()
        rows_sql = (
            sql.SQL(
                "SELECT * FROM ts_read_calendar_{}(%(series)s, %(unit)s, %(tz)s, %(lo)s,"
                " %(end)s, %(limit)s)"
            ).format(sql.SQL(case.tier))
            if calendar
            else queries.page_rows_sql(case.tier, case.kind)
        )
        for label, statement in (
            ("rows", rows_sql),
            ("json", queries.page_json_sql(case.tier, case.kind, calendar is not None)),
        ):

            def run(statement: Any = statement, label: str = label) -> None:
                with conn.transaction(), conn.cursor(binary=True) as cur:
                    cur.adapters.register_loader("text", queries.TextAsBytes)  # as the API
                    cur.execute(BY_TENANT_SQL, [tenant, tenant, RUNTIME_ROLE])  # tenant_context
                    cur.execute(statement, params)
                    rows = cur.fetchall()
                    if label == "rows" and len(rows) != case.rows:
                        raise RuntimeError(f"{case.name}: {len(rows)} rows, not {case.rows}")

            # Past psycopg's prepare threshold and PostgreSQL's five custom plans, as the
            # API's long-lived connections are.
            _timed(run, 8)
            out[label] = statistics.median(_timed(run, count))
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench api", description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20, help="latency samples per large case")
    parser.add_argument("--small-requests", type=int, default=200, help="latency samples, 30d@1h")
    parser.add_argument("--throughput-requests", type=int, default=1000, help="bound per case")
    parser.add_argument("--seconds", type=float, default=5.0, help="time cap per throughput run")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=20, help="requests per case, first")
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    args = parser.parse_args(argv)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "traksense.settings")
    from traksense import settings  # what the API's workers read too (same environment)

    server = server_conninfo()
    conninfo = make_conninfo(**server, dbname=BENCH_DB)
    env = {**os.environ, "DATABASE_URL": conninfo, "SCHEDULER_ENABLED": "false"}
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)

    began = time.perf_counter()
    tenant, key = prepare(server, env)
    load(conninfo, tenant, end)
    version = psycopg.connect(conninfo).execute("SHOW server_version").fetchone()
    print(
        f"PostgreSQL {version[0] if version else '?'}; database {BENCH_DB}; "
        f"loaded in {time.perf_counter() - began:.1f} s"
    )

    try:
        with running_api(env) as port:
            client = Client(port, key)
            kept_alive = Client(port, key, keep_alive=True)
            header = (
                f"{'case':<13}{'rows':>8}{'HTTP p50':>10}{'p95':>8}{'req/s':>8}{'ka req/s':>9}"
                f"{'SQL rows':>10}{'SQL json':>10}   target"
            )
            print(header)
            print("-" * len(header))
            paths = {case.name: f"/data/points?{_query_string(case, end)}" for case in CASES}
            for case in CASES:
                first = orjson.loads(client.get(paths[case.name]))
                tier = first.get("source_tier", first["agg"])
                if tier != case.tier or len(first["data"]) != case.rows or "next" in first:
                    raise RuntimeError(
                        f"{case.name}: unexpected answer {first['agg']}, {len(first['data'])} rows"
                    )
                if (
                    case.agg != "1d"
                    and case.agg != case.tier
                    and first.get("degraded_to") != case.tier
                ):
                    raise RuntimeError(f"{case.name}: not marked as degraded")
            # Warm up every case on both workers (two clients) before measuring any: their
            # connections, prepared statements and memory (the first answers of a size grow the
            # allocators of the workers and of their backends). Without it the first case
            # measured pays for it.
            for case in CASES:
                throughput(
                    functools.partial(client.get, paths[case.name]), args.warmup, 2, args.seconds
                )
            # Latencies in rounds, one request of every case per round, so that whatever drifts
            # during a run (the first case measured was consistently the slowest) spreads over
            # every case instead of weighing on one.
            counts = {
                c.name: args.small_requests if c.rows < 10_000 else args.requests for c in CASES
            }
            latency: dict[str, list[float]] = {c.name: [] for c in CASES}
            for round_ in range(max(counts.values())):
                for case in CASES:
                    if round_ < counts[case.name]:
                        latency[case.name] += _timed(
                            functools.partial(client.get, paths[case.name]), 1
                        )
            for case in CASES:
                path = paths[case.name]
                count = counts[case.name]
                latencies = latency[case.name]
                total = args.throughput_requests if case.rows < 10_000 else 4 * args.requests
                rate = throughput(
                    functools.partial(client.get, path), total, args.concurrency, args.seconds
                )
                kept = throughput(
                    functools.partial(kept_alive.get, path), total, args.concurrency, args.seconds
                )
                sql = direct(conninfo, tenant, case, end, max(10, count // 2))
                print(
                    f"{case.name:<13}{case.rows:>8}{statistics.median(latencies):>8.1f}ms"
                    f"{_percentile(latencies, 0.95):>6.1f}ms{rate:>8.0f}{kept:>9.0f}"
                    f"{sql['rows']:>8.1f}ms{sql['json']:>8.1f}ms   {case.target}"
                )
            print(
                "HTTP: the served API (gunicorn -k asgi -w 2) on loopback, one request per"
                " connection; p50/p95 sequential, "
                f"req/s with {args.concurrency} clients (ka: on kept-alive connections, as"
                " browsers and Grafana use). SQL rows: the same SELECT as app_user, "
                "psycopg binary cursor, fetchall. SQL json: the API's page statement, direct, "
                "over the whole range on one connection (the API reads rollup pages of "
                f"{settings.READ_SPLIT_BUCKETS:,}+ buckets in two halves at once: docs/api.md). "
                f"Load average at the end: {os.getloadavg()[0]:.2f}."
            )
    finally:
        if not args.keep:
            with psycopg.connect(make_conninfo(**server, dbname="postgres"), autocommit=True) as a:
                a.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
    return 0
