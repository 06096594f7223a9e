"""`python -m bench clients`: ordinary reads while slow and idle clients hold connections open.

The API as `traksense serve` runs it (gunicorn's asyncio worker in front of traksense.asgi,
core/webserver.py) beside gunicorn's sync workers serving traksense.wsgi (what `serve` ran
before issue 20), both with 2 workers, on a database of their own on the server TrakSense uses.

For each server: the p50/p99 of `--requests` sequential GETs of one hour of raw samples (a
dashboard's read), first alone, then while these stay open:
- `--half` connections that sent half of their request headers and one byte more per second;
- `--bodies` POSTs whose headers promised a body that arrives one byte per second;
- `--idle` kept-alive connections, each after one whole request.
A GET unanswered within `--give-up` seconds counts as starved; after 3 of them in a row the
server is reported starved and its remaining GETs are not tried.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from datetime import UTC, datetime, timedelta

import orjson

from bench.fleet import _cli
from bench.server import fresh_database, running_api

BENCH_DB = "traksense_bench_clients"
DEVICE = "0b0e0e0e-0000-4000-8000-00000000c001"
POINT = "0b0e0e0e-0000-4000-8000-00000000c002"


def sync_wsgi(bind: str, workers: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "traksense.wsgi",
        "--bind",
        bind,
        "--workers",
        str(workers),
        "--log-level",
        "warning",
        "--no-control-socket",
    ]


def exchange(port: int, request: bytes, timeout: float) -> int:
    """Send one request on a new connection, read the whole answer; its status."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        return read_answer(sock)[0]


def read_answer(sock: socket.socket) -> tuple[int, bytes]:
    """The status and body of the answer arriving on `sock` (which carries Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the answer")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed inside the answer")
        body += chunk
    return int(head.split(b" ", 2)[1]), body[:length]


@contextmanager
def hostile(port: int, key: str, half: int, bodies: int, idle: int) -> Iterator[None]:
    """The slow and idle connections, open (and dripping a byte a second) for the block."""
    with ExitStack() as stack:
        dripping: list[socket.socket] = []

        def connect() -> socket.socket:
            return stack.enter_context(socket.create_connection(("127.0.0.1", port), 30))

        for _ in range(half):
            sock = connect()
            sock.sendall(b"GET /data/series HTTP/1.1\r\nHost: bench\r\nX-Slow: ")
            dripping.append(sock)
        for _ in range(bodies):
            sock = connect()
            sock.sendall(
                b"POST /data/points HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                + f"Authorization: Bearer {key}\r\nContent-Length: 1000000\r\n\r\n".encode()
            )
            dripping.append(sock)
        for _ in range(idle):
            connect().sendall(b"GET /openapi.json HTTP/1.1\r\nHost: bench\r\n\r\n")
        stop = threading.Event()

        def drip() -> None:
            while not stop.wait(1.0):
                for sock in dripping:
                    with suppress(OSError):
                        sock.send(b"x")

        thread = threading.Thread(target=drip, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()


def timed(port: int, request: bytes, count: int, give_up: float) -> tuple[list[float], int]:
    """Latencies in ms of the answered GETs, and how many were starved."""
    times: list[float] = []
    starved = streak = 0
    for _ in range(count):
        began = time.perf_counter()
        try:
            status = exchange(port, request, give_up)
            if status != 200:
                raise RuntimeError(f"GET answered {status}")
            times.append((time.perf_counter() - began) * 1000)
            streak = 0
        except (TimeoutError, ConnectionError):
            starved += 1
            streak += 1
            if streak == 3:
                break
    return times, starved


def figures(times: list[float], starved: int) -> str:
    if not times:
        return f"{'-':>9} {'-':>9} {starved:>8}"
    p99 = sorted(times)[min(len(times) - 1, int(len(times) * 0.99))]
    return f"{statistics.median(times):>7.2f}ms {p99:>7.2f}ms {starved:>8}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench clients", description=__doc__)
    parser.add_argument("--requests", type=int, default=300, help="GETs per measurement")
    parser.add_argument("--half", type=int, default=64)
    parser.add_argument("--bodies", type=int, default=64)
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--give-up", type=float, default=5.0, help="seconds per GET")
    args = parser.parse_args(argv)

    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(hours=1)
    with fresh_database(BENCH_DB) as conninfo:
        env = {**os.environ, "DATABASE_URL": conninfo, "SCHEDULER_ENABLED": "false"}
        tenant = _cli(["tenant", "create", "bench-clients"], env)
        key = _cli(["apikey", "create", "--tenant", tenant], env)
        samples = [
            {
                "device_id": DEVICE,
                "point_id": POINT,
                "value": 20 + i / 10,
                "ts": (start + timedelta(minutes=i)).isoformat(),
            }
            for i in range(60)
        ]
        body = orjson.dumps({"samples": samples})
        post = (
            "POST /data/points HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {key}\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode() + body
        query = (
            f"/data/points?device_id={DEVICE}&point_id={POINT}&agg=raw"
            f"&start={start.strftime('%Y-%m-%dT%H:%M:%SZ')}&end={end.strftime('%Y-%m-%dT%H:%M:%SZ')}"
        )
        get = (
            f"GET {query} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {key}\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        print(
            f"GET one hour of raw samples, {args.requests} sequential, each on a new connection;"
            f" hostile: {args.half} half requests, {args.bodies} slow bodies, {args.idle} idle"
        )
        print(f"{'server':<36} {'clients':<8} {'p50':>9} {'p99':>9} {'starved':>8}")
        print("-" * 74)
        for label, command in (
            ("serve (asgi worker, traksense.asgi)", None),
            ("sync workers (traksense.wsgi)", sync_wsgi),
        ):
            with running_api(env, 2, argv=command) as port:
                if exchange(port, post, 30) != 200:
                    raise RuntimeError("the bench's samples were not accepted")
                timed(port, get, 20, args.give_up)  # warm-up: connections, caches
                alone = timed(port, get, args.requests, args.give_up)
                print(f"{label:<36} {'alone':<8} {figures(*alone)}")
                with hostile(port, key, args.half, args.bodies, args.idle):
                    time.sleep(1.0)
                    loaded = timed(port, get, args.requests, args.give_up)
                print(f"{'':<36} {'hostile':<8} {figures(*loaded)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
