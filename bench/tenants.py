"""`python -m bench tenants`: does a noisy tenant move a quiet tenant's read latency?

Two tenants in a database of their own on the server TrakSense uses, each with one series of a
day of raw samples at one a minute, and the API as `traksense serve` runs it (2 workers). The
quiet tenant reads its day (1,440 rows, `--requests` sequential GETs on one kept-alive
connection); its p50/p99 are measured:

1. alone;
2. while the noisy tenant runs exactly at its limits (what the limits allow it: the floor);
3. while the noisy tenant offers 10x its limits (issue 20 part 3's check): `--ingest-rate`
   samples/s allowed, 10x that sent in batches of `--batch`; `--read-concurrency` reads allowed
   at once, 10x that many readers of the noisy tenant's own day, each retrying at once after a
   429 (a misbehaving client, not one that honours Retry-After);
4. the same load with the noisy tenant's limits lifted (0), for comparison.

The noisy load runs in processes of its own, so that it does not share the measuring client's
interpreter lock; the quiet reads start after 12 s of it, when the ingest bucket's burst (10 s
of the rate) is spent. Printed beside each: what the noisy tenant got (accepted samples/s,
answered reads/s, 429s/s). Target: the quiet p99 under (3) within 1.2x of (1); (3) against (2) shows
what being over the limits costs beyond what the limits allow.

The read limit defaults to 1 here because the API runs 2 workers: a tenant allowed as many
concurrent reads as there are workers may, within its limit, keep every worker busy.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from bench.fleet import _cli
from bench.server import fresh_database, running_api

BENCH_DB = "traksense_bench_tenants"
DEVICE = "0b0e0e0e-0000-4000-8000-00000000d001"
POINT = "0b0e0e0e-0000-4000-8000-00000000d002"


def _day(end: datetime) -> tuple[str, str]:
    return (
        (end - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        end.strftime("%Y-%m-%dT%H:%M:%SZ"),
    )


def read_path(end: datetime) -> str:
    start, stop = _day(end)
    return f"/data/points?device_id={DEVICE}&point_id={POINT}&agg=raw&start={start}&end={stop}"


def batch_body(minutes: list[int], end: datetime, value: float) -> bytes:
    start = end - timedelta(days=1)
    return orjson.dumps(
        {
            "samples": [
                {
                    "device_id": DEVICE,
                    "point_id": POINT,
                    "ts": (start + timedelta(minutes=m)).isoformat(),
                    "value": value,
                }
                for m in minutes
            ]
        }
    )


class Api:
    """One kept-alive connection of one tenant."""

    def __init__(self, port: int, key: str) -> None:
        self.port = port
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def call(self, method: str, path: str, body: bytes | None = None) -> int:
        try:
            self.conn.request(method, path, body=body, headers=self.headers)
            response = self.conn.getresponse()
            response.read()
        except (http.client.HTTPException, OSError):
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            raise
        return response.status


def _reader(port: int, key: str, path: str, stop: Any, ok: Any, refused: Any) -> None:
    api = Api(port, key)
    while not stop.is_set():
        try:
            status = api.call("GET", path)
        except (http.client.HTTPException, OSError):
            continue
        counter = ok if status == 200 else refused
        with counter.get_lock():
            counter.value += 1


def _writer(
    port: int, key: str, end: datetime, rate: int, batch: int, stop: Any, ok: Any, refused: Any
) -> None:
    """Offer `rate` samples/s in batches of `batch` (overwrites of the same day: idempotent)."""
    api = Api(port, key)
    interval = batch / rate
    due = time.perf_counter()
    n = 0
    while not stop.is_set():
        minutes = [(n * batch + i) % 1440 for i in range(batch)]
        try:
            status = api.call("POST", "/data/points", batch_body(minutes, end, float(n % 7)))
        except (http.client.HTTPException, OSError):
            continue
        counter = ok if status == 200 else refused
        with counter.get_lock():
            counter.value += batch if status == 200 else 1
        n += 1
        due += interval
        time.sleep(max(0.0, due - time.perf_counter()))


def quiet_reads(port: int, key: str, path: str, count: int) -> list[float]:
    api = Api(port, key)
    times = []
    for _ in range(count):
        began = time.perf_counter()
        status = api.call("GET", path)
        if status != 200:
            raise RuntimeError(f"the quiet tenant's read answered {status}")
        times.append((time.perf_counter() - began) * 1000)
    return times


def p99(times: list[float]) -> float:
    return sorted(times)[min(len(times) - 1, int(len(times) * 0.99))]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench tenants", description=__doc__)
    parser.add_argument("--requests", type=int, default=600, help="quiet reads per phase")
    parser.add_argument("--ingest-rate", type=int, default=1000, help="noisy tenant's limit")
    parser.add_argument("--read-concurrency", type=int, default=1, help="noisy tenant's limit")
    parser.add_argument("--batch", type=int, default=500, help="samples per noisy POST")
    parser.add_argument("--over", type=int, default=10, help="noisy load, times its limits")
    args = parser.parse_args(argv)

    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    path = read_path(end)
    with fresh_database(BENCH_DB) as conninfo:
        env = {**os.environ, "DATABASE_URL": conninfo, "SCHEDULER_ENABLED": "false"}
        keys = {}
        tenants = {}
        for name in ("quiet", "noisy"):
            tenants[name] = _cli(["tenant", "create", f"bench-{name}"], env)
            keys[name] = _cli(["apikey", "create", "--tenant", tenants[name]], env)
        with running_api(env, 2) as port:
            for name in ("quiet", "noisy"):
                _cli(["tenant", "limits", tenants[name], "--ingest-rate", "0"], env)
                api = Api(port, keys[name])
                for first in range(0, 1440, 480):
                    body = batch_body(list(range(first, first + 480)), end, 21.5)
                    if api.call("POST", "/data/points", body) != 200:
                        raise RuntimeError("loading the day failed")
            quiet_reads(port, keys["quiet"], path, 30)  # warm-up
            print(
                f"quiet tenant: {args.requests} sequential GETs of a day of raw samples (1,440"
                f" rows); noisy tenant: {args.over}x its limits (ingest {args.ingest_rate}"
                f" samples/s, {args.read_concurrency} concurrent reads)"
            )
            print(f"{'phase':<30}{'quiet p50':>10}{'p99':>9}   noisy got")
            print("-" * 86)
            baseline = quiet_reads(port, keys["quiet"], path, args.requests)
            print(f"{'alone':<30}{statistics.median(baseline):>8.2f}ms{p99(baseline):>7.2f}ms")
            phases = (
                ("noisy at its limits (1x)", True, 1),
                (f"noisy at {args.over}x, limits on", True, args.over),
                (f"noisy at {args.over}x, limits off", False, args.over),
            )
            for label, limited, over in phases:
                rate, slots = (args.ingest_rate, args.read_concurrency) if limited else (0, 0)
                _cli(
                    [
                        "tenant",
                        "limits",
                        tenants["noisy"],
                        "--ingest-rate",
                        str(rate),
                        "--read-concurrency",
                        str(slots),
                    ],
                    env,
                )
                times, got = _with_noise(port, keys["noisy"], end, path, args, over, keys["quiet"])
                ratio = p99(times) / p99(baseline)
                print(
                    f"{label:<30}"
                    f"{statistics.median(times):>8.2f}ms{p99(times):>7.2f}ms   {got}"
                    f"   p99 {ratio:.2f}x alone"
                )
    print("Target (issue 20): the quiet p99 with the noisy tenant at 10x its limits <= 1.2x alone.")
    return 0


def _with_noise(
    port: int,
    key: str,
    end: datetime,
    path: str,
    args: argparse.Namespace,
    over: int,
    quiet_key: str,
) -> tuple[list[float], str]:
    """The quiet reads while the noisy tenant offers `over` times its limits."""
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    samples, write_refused = ctx.Value("q", 0), ctx.Value("q", 0)
    reads, read_refused = ctx.Value("q", 0), ctx.Value("q", 0)
    noise = [
        ctx.Process(
            target=_writer,
            args=(
                port,
                key,
                end,
                args.ingest_rate * over,
                args.batch,
                stop,
                samples,
                write_refused,
            ),
        )
    ] + [
        ctx.Process(target=_reader, args=(port, key, path, stop, reads, read_refused))
        for _ in range(args.read_concurrency * over)
    ]
    for process in noise:
        process.start()
    try:
        # The noise reaches its pace and spends the ingest bucket's burst (10 s of its rate).
        time.sleep(12.0)
        began = time.perf_counter()
        before = (samples.value, reads.value, write_refused.value + read_refused.value)
        times = quiet_reads(port, quiet_key, path, args.requests)
        took = time.perf_counter() - began
        after = (samples.value, reads.value, write_refused.value + read_refused.value)
    finally:
        stop.set()
        for process in noise:
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()
    got = "{:>7.0f} samples/s {:>5.0f} reads/s {:>5.0f} 429/s".format(
        *((a - b) / took for a, b in zip(after, before, strict=True))
    )
    return times, got


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
