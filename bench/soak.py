"""`python -m bench fleet --soak`: one node, a fleet of `--series` (default 1,000,000) polled
once a minute, in steady state for `--minutes` (default 15) of wall time (issue 15).

- The series are registered first (the catalog, as after a fleet's first poll).
- Samples arrive as a real fleet sends them: every minute each series once, stamped with that
  minute, in batches of `--batch` spread evenly over the minute (16,700 samples/s at a
  million series), by 2 HTTP clients to gunicorn `-w 2`.
- The scheduler (`traksense worker`) runs every job on its schedule meanwhile.
- A reader asks `GET /data/points?agg=1m` for a random series over the last hour twice a
  second.

Printed at the end: ingest batch latency p50/p99 and whether the senders kept up; each job's
runs and durations; the 1m and 5m tiers' lag (now minus watermark, sampled every 5 s; the 1m
tier's watermark trails by design by one to two minutes); read latency p50/p99.
"""

from __future__ import annotations

import http.client
import os
import random
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from bench.fleet import _cli
from bench.server import running_api, server_conninfo

BENCH_DB = "traksense_bench_soak"


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def register(conninfo: str, tenant: str, series: int, points: int) -> list[tuple[str, str]]:
    """`series` numeric series of one tenant, `points` per device; their (device, point) ids."""
    with psycopg.connect(conninfo) as conn:
        conn.execute(
            "INSERT INTO ts_series (tenant_id, device_id, point_id, kind)"
            " SELECT %s, d.id, gen_random_uuid(), 'numeric'"
            " FROM (SELECT gen_random_uuid() AS id FROM generate_series(1, %s)) d,"
            "      generate_series(1, %s)",
            [tenant, series // points, points],
        )
        conn.commit()
        conn.execute("ANALYZE ts_series")
        rows = conn.execute(
            "SELECT device_id::text, point_id::text FROM ts_series ORDER BY device_id, point_id"
        ).fetchall()
    return [(str(d), str(p)) for d, p in rows]


def run(args: Any) -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "traksense.settings")
    server = server_conninfo()
    conninfo = make_conninfo(**server, dbname=BENCH_DB)
    env = {**os.environ, "DATABASE_URL": conninfo, "SCHEDULER_ENABLED": "false"}
    with psycopg.connect(make_conninfo(**server, dbname="postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{BENCH_DB}"')
    _cli(["migrate", "-v", "0"], env)
    tenant = _cli(["tenant", "create", "bench-soak"], env)
    # The bench measures the service, not a tenant's ingest limit (tenancy/limits).
    _cli(["tenant", "limits", tenant, "--ingest-rate", "0", "--read-concurrency", "0"], env)
    key = _cli(["apikey", "create", "--tenant", tenant], env)
    began = time.perf_counter()
    series = register(conninfo, tenant, args.series, args.points)
    print(
        f"{len(series):,} series registered in {time.perf_counter() - began:.1f} s;"
        f" soak for {args.minutes} min at {len(series) / 60:,.0f} samples/s,"
        f" batches of {args.batch:,}",
        flush=True,
    )
    heads = [f'{{"device_id":"{d}","point_id":"{p}","ts":"' for d, p in series]
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    stop = threading.Event()
    ingest_ms: list[float] = []
    read_ms: list[float] = []
    behind: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def sender(port: int, part: int, parts: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        batches = [
            range(lo, min(lo + args.batch, len(heads))) for lo in range(0, len(heads), args.batch)
        ]
        mine = batches[part::parts]
        minute = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
        while not stop.is_set():
            wait = (minute - datetime.now(UTC)).total_seconds()
            if wait > 0:
                time.sleep(wait)
            stamp = minute.strftime("%Y-%m-%dT%H:%M:%SZ")
            rng = random.Random(minute.timestamp())
            started = time.monotonic()
            for i, rows in enumerate(mine):
                if stop.is_set():
                    break
                due = started + 55.0 * i / len(mine)  # spread over the minute
                if (pause := due - time.monotonic()) > 0:
                    time.sleep(pause)
                body = (
                    '{"samples":['
                    + ",".join(
                        f'{heads[j]}{stamp}","value":{rng.randrange(1500, 2500) / 100}}}'
                        for j in rows
                    )
                    + "]}"
                ).encode()
                t0 = time.perf_counter()
                conn.request("POST", "/data/points", body=body, headers=headers)
                response = conn.getresponse()
                payload = response.read()
                if response.status != 200:
                    errors.append(f"ingest HTTP {response.status}: {payload[:200]!r}")
                    return
                with lock:
                    ingest_ms.append((time.perf_counter() - t0) * 1e3)
            with lock:
                behind.append(time.monotonic() - started)
            minute += timedelta(minutes=1)

    def reader(port: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        rng = random.Random(7)
        while not stop.is_set():
            d, p = rng.choice(series)
            now = datetime.now(UTC)
            query = (
                f"/data/points?device_id={d}&point_id={p}&agg=1m"
                f"&start={(now - timedelta(hours=1)).strftime('%Y-%m-%dT%H:%M:%SZ')}"
                f"&end={now.strftime('%Y-%m-%dT%H:%M:%SZ')}"
            )
            t0 = time.perf_counter()
            conn.request("GET", query, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            if response.status != 200:
                errors.append(f"read HTTP {response.status}: {payload[:200]!r}")
                return
            with lock:
                read_ms.append((time.perf_counter() - t0) * 1e3)
            time.sleep(0.5)

    runs: dict[tuple[str, Any], float] = {}
    lags: dict[str, list[float]] = {"1m": [], "5m": [], "1h": []}
    # Lag when each refresh job finished: by policy a refresh ends one bucket before now.
    job_lags: dict[str, dict[Any, float]] = {"1m": {}, "5m": {}, "1h": {}}

    def j_start(tier: str) -> Any:
        return max((s for (n, s) in runs if n == f"refresh_{tier}"), default=None)

    def watcher() -> None:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            while not stop.wait(5.0):
                for name, start, seconds in conn.execute(
                    "SELECT name, last_start, extract(epoch FROM last_duration) FROM ts_jobs"
                    " WHERE last_start IS NOT NULL AND last_duration IS NOT NULL"
                ).fetchall():
                    runs[(str(name), start)] = float(seconds)
                for tier, lag in conn.execute(
                    "SELECT t.tier, extract(epoch FROM j.last_finish - t.watermark)"
                    " FROM ts_jobs j JOIN ts_tier t ON j.name = 'refresh_' || t.tier"
                    " WHERE j.last_finish IS NOT NULL AND isfinite(t.watermark)"
                ).fetchall():
                    job_lags[str(tier)][j_start(str(tier))] = float(lag)
                for tier, lag in conn.execute(
                    "SELECT tier, extract(epoch FROM now() - watermark) FROM ts_tier"
                    " WHERE bucket_width IS NOT NULL AND isfinite(watermark)"
                ).fetchall():
                    lags[str(tier)].append(float(lag))

    with running_api(env, 2, timeout=600) as port:
        worker = subprocess.Popen(
            [sys.executable, "-m", "traksense", "worker"],
            env={**env, "SCHEDULER_ENABLED": "true"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        threads = [threading.Thread(target=sender, args=(port, n, 2)) for n in range(2)]
        threads += [threading.Thread(target=reader, args=(port,)), threading.Thread(target=watcher)]
        for t in threads:
            t.start()
        try:
            deadline = time.monotonic() + args.minutes * 60
            while time.monotonic() < deadline and not errors:
                time.sleep(30)
                with lock:
                    print(
                        f"  {len(ingest_ms):,} batches, ingest p99 {_pct(ingest_ms, 0.99):.0f} ms,"
                        f" read p99 {_pct(read_ms, 0.99):.0f} ms, 1m lag"
                        f" {lags['1m'][-1] if lags['1m'] else float('nan'):.0f} s",
                        flush=True,
                    )
        finally:
            stop.set()
            for t in threads:
                t.join()
            worker.terminate()
            worker.wait(timeout=60)
    if errors:
        print(f"FAILED: {errors[0]}")
    print()
    print(
        f"ingest: {len(ingest_ms):,} batches of {args.batch:,};"
        f" latency p50 {_pct(ingest_ms, 0.5):.0f} ms,"
        f" p99 {_pct(ingest_ms, 0.99):.0f} ms; a minute's batches all sent within"
        f" {max(behind) if behind else float('nan'):.1f} s (of 60)"
    )
    print(
        f"reads (1m, last hour, random series): {len(read_ms):,}; p50 {_pct(read_ms, 0.5):.1f} ms,"
        f" p99 {_pct(read_ms, 0.99):.1f} ms"
    )
    by_job: dict[str, list[float]] = {}
    for (name, _start), seconds in runs.items():
        by_job.setdefault(name, []).append(seconds)
    for name in sorted(by_job):
        d = by_job[name]
        print(
            f"  job {name:14} {len(d):3} run(s),"
            f" duration p50 {_pct(d, 0.5):6.2f} s, max {max(d):6.2f} s"
        )
    for tier, done in job_lags.items():
        if done:
            print(
                f"  tier {tier}: lag when its refresh job finished p50"
                f" {_pct(list(done.values()), 0.5):.0f} s, max {max(done.values()):.0f} s"
            )
    for tier, values in lags.items():
        if values:
            print(
                f"  tier {tier}: lag (now - watermark)"
                f" p50 {_pct(values, 0.5):.0f} s, max {max(values):.0f} s"
            )
    if not args.keep:
        with psycopg.connect(make_conninfo(**server, dbname="postgres"), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
    return 1 if errors else 0
