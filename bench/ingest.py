"""`python -m bench ingest`: POST /data/points over HTTP beside a plain binary COPY, same server.

Workload (issue 2's reference): 12 numeric series = 3 tenants x 2 devices x 2 points at 1 Hz,
`--days` long (default 1 day = 1,036,800 samples; `--hours N` for a quick run), ending a minute
ago. Each tenant's samples are sent in time order, 10,000 per request (`--batch`), by 2 client
threads (`--threads`) so that both gunicorn workers stay busy. Request bodies are rendered
before the clock starts: the figure is the service's, not the JSON encoder's.

Figures printed, all from the same run on the same server:

- HTTP ingest, samples/s: gunicorn `-w 2` (started here, on a free 127.0.0.1 port, scheduler
  off) running the real view: authentication, validation, ts_ingest; wall time from the first
  request to the last answer, after a few empty (rejected) requests have warmed the workers.
- plain COPY, samples/s: the same rows (tenant, device, point, ts, value) with psycopg's binary
  COPY into a bare table without indexes, as the owner, committed. The floor nothing beats.
- stored bytes per sample: pg_total_relation_size of every ts_measure partition (heap, primary
  key, BRIN, TOAST, free-space and visibility maps) over the number of rows; the bare table's
  figure beside it.

Where: a database of its own, `traksense_bench_ingest`, dropped and recreated on the server
TrakSense uses (DATABASE_URL, or else the embedded PostgreSQL under TRAKSENSE_HOME, started or
attached to by this process first so that its socket directory can be handed to gunicorn), and
dropped again at the end (`--keep` keeps it for a look). So the bench never writes into the
user's data and leaves nothing behind.
"""

from __future__ import annotations

import argparse
import http.client
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg
from psycopg.conninfo import make_conninfo

from bench.server import running_api, server_conninfo

BENCH_DB = "traksense_bench_ingest"
TENANTS, DEVICES, POINTS = 3, 2, 2
TARGET_RATE = 170_000
TARGET_BYTES = 120


@dataclass(frozen=True)
class Tenant:
    id: str
    key: str
    series: list[tuple[str, str]]  # (device_id, point_id)


@dataclass(frozen=True)
class Request:
    key: str
    body: bytes
    samples: int


def _cli(args: list[str], env: dict[str, str]) -> str:
    cmd = [sys.executable, "-m", "traksense", *args]
    done = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


def prepare(server: dict[str, Any], env: dict[str, str]) -> list[Tenant]:
    """A fresh, migrated bench database with 3 tenants, their keys and series ids."""
    with psycopg.connect(make_conninfo(**server, dbname="postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{BENCH_DB}"')
    _cli(["migrate", "-v", "0"], env)
    tenants = []
    for n in range(TENANTS):
        tenant_id = _cli(["tenant", "create", f"bench-ingest-{n}"], env)
        # The bench measures the service, not a tenant's ingest limit (tenancy/limits).
        _cli(["tenant", "limits", tenant_id, "--ingest-rate", "0", "--read-concurrency", "0"], env)
        key = _cli(["apikey", "create", "--tenant", tenant_id], env)
        devices = [str(uuid.uuid4()) for _ in range(DEVICES)]
        points = [str(uuid.uuid4()) for _ in range(POINTS)]
        tenants.append(Tenant(tenant_id, key, [(d, p) for d in devices for p in points]))
    return tenants


def _value(second: int, series: int) -> float:
    return round(20.0 + series + (second % 600) / 100.0, 2)


def requests(tenants: list[Tenant], start: datetime, seconds: int, batch: int) -> list[Request]:
    """Request bodies, each tenant's in time order, tenants interleaved."""
    stamps = [(start + timedelta(seconds=s)).strftime("%Y-%m-%dT%H:%M:%SZ") for s in range(seconds)]
    per_tenant: list[list[Request]] = []
    for tenant in tenants:
        heads = [f'{{"device_id":"{d}","point_id":"{p}","ts":"' for d, p in tenant.series]
        items = [
            f'{head}{stamps[s]}","value":{_value(s, i)}}}'
            for s in range(seconds)
            for i, head in enumerate(heads)
        ]
        out = []
        for lo in range(0, len(items), batch):
            chunk = items[lo : lo + batch]
            body = ('{"samples":[' + ",".join(chunk) + "]}").encode()
            out.append(Request(tenant.key, body, len(chunk)))
        per_tenant.append(out)
    interleaved: list[Request] = []
    for group in zip(*per_tenant, strict=True):
        interleaved.extend(group)
    return interleaved


def send(port: int, work: list[Request], threads: int) -> float:
    """POST every request (threads clients in parallel); return the wall time in seconds."""
    total = sum(r.samples for r in work)
    lock = threading.Lock()
    queue: Iterator[Request] = iter(work)
    state = {"done": 0, "accepted": 0, "next_tenth": 1}
    errors: list[str] = []
    began = time.perf_counter()

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        try:
            while True:
                with lock:
                    request = next(queue, None)
                if request is None or errors:
                    return
                headers = {
                    "Authorization": f"Bearer {request.key}",
                    "Content-Type": "application/json",
                }
                # Kept alive between requests (http.client reopens it when the server closed
                # it, as sync workers did after every answer).
                conn.request("POST", "/data/points", body=request.body, headers=headers)
                response = conn.getresponse()
                payload = response.read()
                if response.status != 200:
                    errors.append(f"HTTP {response.status}: {payload[:300]!r}")
                    return
                accepted = int(orjson.loads(payload)["accepted"])
                with lock:
                    state["done"] += request.samples
                    state["accepted"] += accepted
                    while state["done"] * 10 >= state["next_tenth"] * total:
                        elapsed = time.perf_counter() - began
                        print(
                            f"  {state['next_tenth'] * 10:3d}%  {state['done']:>10,} samples"
                            f"  {state['done'] / elapsed:>10,.0f} samples/s",
                            flush=True,
                        )
                        state["next_tenth"] += 1
        finally:
            conn.close()

    workers = [threading.Thread(target=client) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - began
    if errors:
        raise RuntimeError(f"ingest failed: {errors[0]}")
    if state["accepted"] != total:
        raise RuntimeError(f"{state['accepted']:,} samples accepted of {total:,} sent")
    return elapsed


def copy_baseline(
    conninfo: str, tenants: list[Tenant], start: datetime, seconds: int
) -> tuple[float, int]:
    """Binary COPY of the same rows into a bare table; (seconds, bytes of the table)."""
    stamps = [start + timedelta(seconds=s) for s in range(seconds)]
    rows = [
        (tid, dev, pt, stamps[s], _value(s, i))
        for tid, series in ((uuid.UUID(t.id), t.series) for t in tenants)
        for s in range(seconds)
        for i, (dev, pt) in enumerate((uuid.UUID(d), uuid.UUID(p)) for d, p in series)
    ]
    with psycopg.connect(conninfo) as conn:
        conn.execute(
            "CREATE TABLE bench_bare (tenant_id uuid, device_id uuid, point_id uuid,"
            " ts timestamptz, v_num float8)"
        )
        conn.commit()
        began = time.perf_counter()
        with conn.cursor() as cur, cur.copy("COPY bench_bare FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["uuid", "uuid", "uuid", "timestamptz", "float8"])
            for row in rows:
                copy.write_row(row)
        conn.commit()
        elapsed = time.perf_counter() - began
        size = conn.execute("SELECT pg_total_relation_size('bench_bare')").fetchone()
    return elapsed, int(size[0]) if size else 0


def stored_size(conninfo: str) -> tuple[int, int]:
    """(bytes of every ts_measure partition with its indexes, rows in ts_measure)."""
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(
            "SELECT (SELECT coalesce(sum(pg_total_relation_size(relid)), 0)"
            "          FROM pg_partition_tree('ts_measure') WHERE isleaf),"
            "       (SELECT count(*) FROM ts_measure)"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench ingest", description=__doc__.split("\n")[0]
    )
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--days", type=float, default=1.0, help="workload length (default 1)")
    length.add_argument("--hours", type=float, help="workload length in hours (quick runs)")
    parser.add_argument("--batch", type=int, default=10_000, help="samples per request")
    parser.add_argument("--threads", type=int, default=2, help="client threads")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--keep", action="store_true", help=f"keep the {BENCH_DB} database")
    args = parser.parse_args(argv)
    seconds = int(round((args.hours if args.hours is not None else args.days * 24) * 3600))

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "traksense.settings")
    server = server_conninfo()
    conninfo = make_conninfo(**server, dbname=BENCH_DB)
    env = {**os.environ, "DATABASE_URL": conninfo, "SCHEDULER_ENABLED": "false"}
    end = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)
    start = end - timedelta(seconds=seconds)

    tenants = prepare(server, env)
    work = requests(tenants, start, seconds, args.batch)
    total = sum(r.samples for r in work)
    with psycopg.connect(conninfo) as conn:
        version = conn.execute("SHOW server_version").fetchone()
    print(
        f"PostgreSQL {version[0] if version else '?'}, database {BENCH_DB}: {total:,} samples"
        f" ({len(tenants) * DEVICES * POINTS} series at 1 Hz for {seconds / 3600:g} h),"
        f" {len(work)} requests of {args.batch:,}, {args.threads} clients,"
        f" gunicorn -w {args.workers}"
    )

    with running_api(env, args.workers, timeout=300) as port:
        _warm_up(port, tenants[0].key, args.workers * 2)
        http_seconds = send(port, work, args.threads)
    del work
    http_rate = total / http_seconds

    stored_bytes, rows = stored_size(conninfo)
    if rows != total:
        raise RuntimeError(f"ts_measure holds {rows:,} rows; {total:,} were sent")
    copy_seconds, bare_bytes = copy_baseline(conninfo, tenants, start, seconds)
    copy_rate = total / copy_seconds

    print()
    print(f"{'':28}{'samples/s':>12}{'seconds':>9}{'bytes/sample':>14}")
    print(
        f"{'HTTP POST /data/points':28}{http_rate:>12,.0f}{http_seconds:>9.1f}"
        f"{stored_bytes / rows:>14.1f}"
    )
    print(
        f"{'plain binary COPY, no index':28}{copy_rate:>12,.0f}{copy_seconds:>9.1f}"
        f"{bare_bytes / total:>14.1f}"
    )
    print()
    print(
        f"HTTP ingest {http_rate:,.0f} samples/s = {http_rate / copy_rate:.0%} of plain COPY;"
        f" target >= {TARGET_RATE:,}: {'met' if http_rate >= TARGET_RATE else 'MISSED'}"
    )
    per_sample = stored_bytes / rows
    print(
        f"stored {per_sample:.1f} bytes/sample (ts_measure, indexes included);"
        f" target <= {TARGET_BYTES}: {'met' if per_sample <= TARGET_BYTES else 'MISSED'}"
    )

    if not args.keep:
        with psycopg.connect(make_conninfo(**server, dbname="postgres"), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
    return 0


def _warm_up(port: int, key: str, count: int) -> None:
    """Authenticated requests with an empty batch (answered 400, nothing written): each worker
    connects to PostgreSQL and imports the ingest code before the clock starts."""
    for _ in range(count):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request(
            "POST",
            "/data/points",
            body=b'{"samples": []}',
            headers={"Authorization": f"Bearer {key}"},
        )
        conn.getresponse().read()
        conn.close()
