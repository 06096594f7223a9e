"""`python -m bench dashboard`: the reads a fleet dashboard makes (issue 16 parts 2, 3 and 5).

Many series in one request (POST /data/query) and the paged catalog (GET /data/series, GET
/data/devices), beside one series' GET /data/points, at the seed's shape (12 series) and at the
fleet shape (`--series`, default 100,000, five points a device), each in a database of its own
on the server TrakSense uses, against the API as `traksense serve` runs it (2 workers).

Loaded with COPY as the owner: every series has two raw samples today (so the catalog's first
and last times are real probes); device 0 has 20 points (12 at the seed's shape) with a day of
1m rollups each; the first 100 series of the other devices an hour of 1m rollups. Watermarks at
the end: the reads answer materialized rows.

Cases, each p50/p95 of `--requests` sequential requests (one connection each) and req/s with
`--concurrency` clients:

    1 series 1d@1m        GET /data/points, one of device 0's points over the day: the baseline
    device 1d@1m          POST /data/query, all of device 0's points over the day: <= 2x baseline
    100 series 1h@1m      POST /data/query, 100 series of 20 devices over the hour: p50 <= 50 ms
    catalog page          GET /data/series?limit=1000, the first page: p50 <= 20 ms
    device's points       GET /data/series?device_id=<device 0>
    devices page          GET /data/devices?limit=1000
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg

from bench.api import _percentile, _timed, throughput
from bench.fleet import _cli
from bench.server import fresh_database, running_api

BENCH_DB = "traksense_bench_dashboard"
POINTS_PER_DEVICE = 5


def _uuid(kind: int, n: int) -> str:
    return str(uuid.UUID(int=(0x0B0E << 112) | (kind << 64) | n))


def device_id(n: int) -> str:
    return _uuid(1, n)


def point_id(n: int) -> str:
    return _uuid(2, n)


def load(conninfo: str, tenant: str, series: int, end: datetime) -> dict[str, Any]:
    """The shape described above; returns the series the cases read."""
    day = end - timedelta(days=1)
    first_device = min(20, series)
    # Device 0 holds first_device points, every other device POINTS_PER_DEVICE.
    layout = [(0, p) for p in range(first_device)] + [
        (1 + i // POINTS_PER_DEVICE, i % POINTS_PER_DEVICE) for i in range(series - first_device)
    ]
    with psycopg.connect(conninfo) as conn:
        for tier in ("raw", "1m"):
            conn.execute("SELECT ts_ensure_partitions(%s, %s, %s)", [tier, day, end])
        with conn.cursor().copy(
            "COPY ts_series (series_id, tenant_id, device_id, point_id, kind) FROM STDIN"
        ) as copy:
            for sid, (d, p) in enumerate(layout, start=1):
                copy.write_row((sid, tenant, device_id(d), point_id(p), "numeric"))
        conn.execute(
            "SELECT setval(pg_get_serial_sequence('ts_series', 'series_id'), %s)", [len(layout)]
        )
        with conn.cursor().copy(
            "COPY ts_measure (series_id, ts, v_num) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["int8", "timestamptz", "float8"])
            for sid in range(1, len(layout) + 1):
                copy.write_row((sid, end - timedelta(hours=2), 20.0))
                copy.write_row((sid, end - timedelta(minutes=1), 21.0))
        # Device 0: a day of 1m; the next 100 series: an hour.
        hour_series = list(range(first_device + 1, min(len(layout), first_device + 100) + 1))
        with conn.cursor().copy(
            "COPY ts_measure_1m (series_id, bucket, v_sum, v_min, v_max, n)"
            " FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["int8", "timestamptz", "float8", "float8", "float8", "int4"])
            for sid, minutes in [(s, 1440) for s in range(1, first_device + 1)] + [
                (s, 60) for s in hour_series
            ]:
                for m in range(minutes):
                    v = 20.0 + (m % 60) / 10
                    copy.write_row(
                        (sid, end - timedelta(minutes=minutes - m), v * 3, v - 1, v + 1, 3)
                    )
        conn.execute("UPDATE ts_tier SET watermark = %s WHERE tier <> 'raw'", [end])
        conn.execute("DELETE FROM ts_invalidation")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) ts_series, ts_measure, ts_measure_1m")
    return {
        "device": [
            {"device_id": device_id(0), "point_id": point_id(p)} for p in range(first_device)
        ],
        "hundred": [
            {"device_id": device_id(layout[s - 1][0]), "point_id": point_id(layout[s - 1][1])}
            for s in (hour_series or list(range(1, first_device + 1)))
        ],
    }


def call(port: int, key: str, method: str, path: str, body: bytes | None = None) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        headers = {"Authorization": f"Bearer {key}", "Connection": "close"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"{method} {path} -> {response.status}: {data[:300]!r}")
        return data
    finally:
        conn.close()


def run_shape(series: int, args: argparse.Namespace) -> list[str]:
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    day = {"start": (end - timedelta(days=1)).isoformat(), "end": end.isoformat()}
    hour = {"start": (end - timedelta(hours=1)).isoformat(), "end": end.isoformat()}
    with fresh_database(BENCH_DB, keep=args.keep) as conninfo:
        env = {**os.environ, "DATABASE_URL": conninfo, "SCHEDULER_ENABLED": "false"}
        tenant = _cli(["tenant", "create", "bench-dashboard"], env)
        key = _cli(["apikey", "create", "--tenant", tenant], env)
        _cli(["tenant", "limits", tenant, "--read-concurrency", "0", "--ingest-rate", "0"], env)
        began = time.perf_counter()
        picked = load(conninfo, tenant, series, end)
        print(f"{series:,} series loaded in {time.perf_counter() - began:.1f} s")
        one = picked["device"][0]
        one_path = "/data/points?" + "&".join(
            f"{k}={v}" for k, v in {**one, "agg": "1m", **day}.items()
        ).replace("+", "%2B")
        device_body = orjson.dumps({"agg": "1m", **day, "series": picked["device"]})
        hundred_body = orjson.dumps({"agg": "1m", **hour, "series": picked["hundred"]})
        cases: list[tuple[str, Callable[[], bytes], str]] = [
            ("1 series 1d@1m", lambda: call(port, key, "GET", one_path), "baseline"),
            (
                f"device {len(picked['device'])} pts 1d@1m",
                lambda: call(port, key, "POST", "/data/query", device_body),
                "<= 2x baseline",
            ),
            (
                f"{len(picked['hundred'])} series 1h@1m",
                lambda: call(port, key, "POST", "/data/query", hundred_body),
                "p50 <= 50 ms",
            ),
            (
                "catalog page",
                lambda: call(port, key, "GET", "/data/series?limit=1000"),
                "p50 <= 20 ms",
            ),
            (
                "device's points",
                lambda: call(port, key, "GET", f"/data/series?device_id={one['device_id']}"),
                "",
            ),
            ("devices page", lambda: call(port, key, "GET", "/data/devices?limit=1000"), ""),
        ]
        lines = []
        with running_api(env, 2) as port:
            answer = orjson.loads(cases[1][1]())
            assert len(answer["results"]) == len(picked["device"])
            assert all(len(r["data"]) == 1440 for r in answer["results"]), "device rows"
            for _name, fn, _target in cases:  # warm-up on both workers
                throughput(fn, args.warmup, 2)
            latency: dict[str, list[float]] = {name: [] for name, _f, _t in cases}
            for _ in range(args.requests):  # rounds: every case in turn
                for name, fn, _target in cases:
                    latency[name] += _timed(fn, 1)
            base = statistics.median(latency[cases[0][0]])
            for name, fn, target in cases:
                p50 = statistics.median(latency[name])
                p95 = _percentile(latency[name], 0.95)
                per_s = throughput(fn, args.throughput, args.concurrency)
                ratio = f"{p50 / base:.2f}x" if name != cases[0][0] else ""
                lines.append(
                    f"{series:>9,} {name:<24}{p50:>8.1f}ms{p95:>8.1f}ms{per_s:>8.0f}"
                    f"{ratio:>8}   {target}"
                )
    return lines


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench dashboard",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--series", type=int, default=100_000, help="the fleet shape's series")
    parser.add_argument("--requests", type=int, default=40, help="latency samples per case")
    parser.add_argument("--throughput", type=int, default=200, help="requests per req/s run")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--keep", action="store_true", help=f"keep the {BENCH_DB} database")
    args = parser.parse_args(argv)
    lines = []
    for series in (12, args.series):
        lines += run_shape(series, args)
    print(f"{'series':>9} {'case':<24}{'p50':>10}{'p95':>10}{'req/s':>8}{'/base':>8}   target")
    print("-" * 84)
    for line in lines:
        print(line)
    print(
        f"HTTP: the served API (gunicorn -k asgi -w 2), one request per connection; p50/p95"
        f" sequential, req/s with {args.concurrency} clients. /base: p50 over the 1-series read"
        f" of the same shape."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
