"""`python -m bench mqtt`: MQTT ingest through a real Mosquitto, beside HTTP ingest of the same
samples in the same run (issue 17).

Workload: `--devices` x `--points` numeric series (default 20,000 x 5), each device publishing
one QoS 1 message per device-minute (`{"ts", "values": {5 points}}` to ts/{tenant}/{device}/up),
`--minutes` fleet minutes (default 5) compressed in time: published as fast as the broker takes
them, by one pipelined publishing connection (`Publisher`), to a development broker (`traksense
mqtt broker`'s configuration) on a free port. One consumer process (`traksense mqtt`,
defaults: batches of 10,000 samples or 200 ms).

Figures:
- sustained MQTT ingest, samples/s: from the first publish to the last sample committed (polled
  in the database), beside HTTP ingest of the same samples (other minutes) in batches of 10,000
  by 4 clients to gunicorn -w 2, the path `python -m bench fleet` measures;
- publish-to-readable latency p50/p99 at `--latency-share` (default 50 %) of the measured MQTT
  rate for `--latency-seconds`: a probe series published every 100 ms among the fleet's
  traffic, polled in the database every 10 ms;
- the consumer's resident memory (VmRSS) at start and end of the run, and its peak (VmHWM).

Where: its own database `traksense_bench_mqtt` on the server TrakSense uses, dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import mqtt5
import orjson
import psycopg
from psycopg.conninfo import make_conninfo

from bench.fleet import Fleet, _cli, _value, send
from bench.server import running_api, server_conninfo

BENCH_DB = "traksense_bench_mqtt"


class Publisher:
    """One QoS 1 publishing connection on mqtt5's codec, pipelined: up to the broker's Receive
    Maximum (at most 10,000) PUBLISH packets in flight, PUBACKs read by a thread of its own.
    paho's publisher wrote one packet per network-thread wake-up and topped out at ~5,500
    messages/s on this machine, below what the consumer takes: the bench measured itself."""

    def __init__(self, port: int, username: str, password: str) -> None:
        self._sock = socket.create_connection(("127.0.0.1", port))
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock.sendall(
            mqtt5.ConnectPacket(
                f"bench-publisher-{uuid.uuid4().hex[:8]}",
                username=username,
                password=password.encode(),
                clean_start=True,
            ).write()
        )
        buffer = b""
        while True:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise RuntimeError("the broker closed the publisher's connection")
            buffer += chunk
            try:
                ack, _ = mqtt5.read(memoryview(buffer))
                break
            except IndexError:  # not a whole packet yet
                continue
        if not isinstance(ack, mqtt5.ConnAckPacket) or ack.reason_code != 0:
            raise RuntimeError(f"the broker refused the publisher: {ack!r}")
        self._window = threading.Semaphore(min(ack.receive_max, 10_000))
        self._packet_id = 0
        self.acked = 0
        threading.Thread(target=self._read_acks, daemon=True).start()

    def _read_acks(self) -> None:
        buffer = bytearray()
        while chunk := self._sock.recv(1 << 20):
            buffer += chunk
            view, used = memoryview(buffer), 0
            while True:
                try:
                    packet, size = mqtt5.read(view[used:])
                except IndexError:
                    break
                used += size
                if isinstance(packet, mqtt5.PubAckPacket):
                    self.acked += 1
                    self._window.release()
            view.release()
            del buffer[:used]

    def publish(self, topic: str, payload: bytes) -> None:
        self.publish_many([(topic, payload)])

    def publish_many(self, messages: list[tuple[str, bytes]], chunk: int = 256) -> None:
        """Publish in writes of up to `chunk` packets (a fleet's gateways fill TCP segments
        too; one write per message would spend the cores on system calls)."""
        for at in range(0, len(messages), chunk):
            packets = []
            for topic, payload in messages[at : at + chunk]:
                self._window.acquire()
                self._packet_id = self._packet_id % 65535 + 1
                packets.append(
                    mqtt5.PublishPacket(
                        topic, payload, qos=mqtt5.QoS.AT_LEAST_ONCE, packet_id=self._packet_id
                    ).write()
                )
            self._sock.sendall(b"".join(packets))

    def close(self) -> None:
        self._sock.sendall(mqtt5.DisconnectPacket().write())
        self._sock.close()


def _messages(fleet: Fleet, tenant: str, at: datetime, minute: int) -> list[tuple[str, bytes]]:
    stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    out = []
    n = 0
    for d, device in enumerate(fleet.devices):
        values = {}
        for point in fleet.points[d]:
            values[point] = _value(minute, n)
            n += 1
        out.append((f"ts/{tenant}/{device}/up", orjson.dumps({"ts": stamp, "values": values})))
    return out


def _rss(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of `pid`, in MiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) // 1024
    return out


def _count(conn: psycopg.Connection[Any], lo: datetime, hi: datetime) -> int:
    row = conn.execute(
        "SELECT count(*) FROM ts_measure WHERE ts >= %s AND ts < %s", (lo, hi)
    ).fetchone()
    return int(row[0]) if row else 0


def _wait_for_count(
    conn: psycopg.Connection[Any], lo: datetime, hi: datetime, total: int, what: str
) -> None:
    """Until [lo, hi) holds `total` samples; fails when the count stops moving for 30 s."""
    last, since = -1, time.perf_counter()
    while True:
        n = _count(conn, lo, hi)
        if n >= total:
            return
        if n != last:
            last, since = n, time.perf_counter()
        elif time.perf_counter() - since > 30:
            raise RuntimeError(f"{what}: {n:,} of {total:,} samples stored, none for 30 s")
        # Not more often: each count scans the rows so far, on the cores the consumer needs.
        time.sleep(0.25)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench mqtt", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--devices", type=int, default=20_000)
    parser.add_argument("--points", type=int, default=5)
    parser.add_argument("--minutes", type=int, default=5)
    parser.add_argument("--latency-share", type=float, default=0.5)
    parser.add_argument("--latency-seconds", type=float, default=30.0)
    args = parser.parse_args(argv)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "traksense.settings")
    import django

    django.setup()
    from traksense.mqtt import broker, credentials

    server = server_conninfo()
    conninfo = make_conninfo(**server, dbname=BENCH_DB)
    with psycopg.connect(make_conninfo(**server, dbname="postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{BENCH_DB}"')
    directory = Path(tempfile.mkdtemp(prefix="traksense-bench-mqtt-"))
    port = broker.free_port()
    admin_url, consumer_url = broker.prepare(directory, port)
    mosquitto = broker.start(directory, port)
    consumer: subprocess.Popen[bytes] | None = None
    try:
        broker.ensure_consumer(admin_url, consumer_url)
        env = {**os.environ, "DATABASE_URL": conninfo, "SCHEDULER_ENABLED": "false"}
        _cli(["migrate", "-v", "0"], env)
        tenant = _cli(["tenant", "create", "bench-mqtt"], env)
        _cli(["tenant", "limits", tenant, "--ingest-rate", "0", "--read-concurrency", "0"], env)
        key = _cli(["apikey", "create", "--tenant", tenant], env)
        username, password = credentials.create(admin_url, uuid.UUID(tenant), None)
        fleet = Fleet(args.devices, args.points)
        conn = psycopg.connect(conninfo, autocommit=True)
        version = conn.execute("SHOW server_version").fetchone()
        print(
            f"PostgreSQL {version[0] if version else '?'}, Mosquitto on 127.0.0.1:{port}:"
            f" {args.devices:,} devices x {args.points} points = {fleet.size:,} series,"
            f" {args.minutes} fleet minutes ({args.devices * args.minutes:,} messages,"
            f" {fleet.size * args.minutes:,} samples)",
            flush=True,
        )
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        base = now - timedelta(minutes=3 * args.minutes + 30)

        consumer_env = {
            **env,
            "MQTT_URL": f"mqtt://{consumer_url.username}:{consumer_url.password}@127.0.0.1:{port}",
            "MQTT_CLIENT_ID": "bench-consumer",
        }
        consumer = subprocess.Popen(
            [sys.executable, "-m", "traksense", "mqtt"],
            env=consumer_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        publisher = Publisher(port, username, password)
        # Warm-up: the first fleet minute registers the series (not timed).
        warm = base - timedelta(minutes=1)
        time.sleep(2)
        publisher.publish_many(_messages(fleet, tenant, warm, -1))
        _wait_for_count(conn, warm, base, fleet.size, "the warm-up minute")
        conn.execute("ANALYZE ts_series")
        rss_start = _rss(consumer.pid)

        # Sustained rate: every message published as fast as the broker takes it.
        work = [
            m
            for minute in range(args.minutes)
            for m in _messages(fleet, tenant, base + timedelta(minutes=minute), minute)
        ]
        end = base + timedelta(minutes=args.minutes)
        total = fleet.size * args.minutes
        began = time.perf_counter()
        publisher.publish_many(work)
        published = time.perf_counter() - began
        _wait_for_count(conn, base, end, total, "the timed messages")
        mqtt_seconds = time.perf_counter() - began
        mqtt_rate = total / mqtt_seconds
        del work

        # The same samples over HTTP (the next minutes of the same series).
        http_base = end
        with running_api(env, 2, timeout=600) as api_port:
            bodies = [
                b
                for minute in range(args.minutes)
                for b in fleet.bodies(http_base + timedelta(minutes=minute), minute, 10_000)
            ]
            http_seconds, _ = send(api_port, key, bodies, 4)
        http_rate = total / http_seconds

        # Latency at a share of the measured rate.
        latencies = _latency(
            publisher,
            conn,
            fleet,
            tenant,
            http_base + timedelta(minutes=args.minutes),
            mqtt_rate * args.latency_share,
            args.latency_seconds,
        )
        rss_end = _rss(consumer.pid)
        publisher.close()
    finally:
        if consumer is not None:
            consumer.terminate()
            consumer.wait(30)
        mosquitto.terminate()
        mosquitto.wait(10)
        shutil.rmtree(directory, ignore_errors=True)
        with psycopg.connect(make_conninfo(**server, dbname="postgres"), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')

    latencies.sort()
    print()
    print(f"{'':48}{'MQTT':>12}{'HTTP':>12}{'ratio':>8}")
    print(
        f"{'ingest, samples/s (publish to committed)':48}{mqtt_rate:>12,.0f}{http_rate:>12,.0f}"
        f"{mqtt_rate / http_rate:>8.2f}"
    )
    print(f"{'  publishing alone took, s':48}{published:>12.1f}")
    print(
        f"{'latency publish→readable at':30}{args.latency_share:>4.0%} of the rate, p50 / p99 ms"
        f"{latencies[len(latencies) // 2] * 1e3:>8.0f}"
        f"{latencies[int(len(latencies) * 0.99)] * 1e3:>12.0f}"
    )
    print(
        f"{'consumer RSS MiB: start / end / peak':48}{rss_start['VmRSS']:>12}"
        f"{rss_end['VmRSS']:>12}{rss_end['VmHWM']:>8}"
    )
    return 0


def _latency(
    publisher: Publisher,
    conn: psycopg.Connection[Any],
    fleet: Fleet,
    tenant: str,
    start: datetime,
    rate: float,
    seconds: float,
) -> list[float]:
    """Publish the fleet's messages at `rate` samples/s from `start` on, with a probe series
    every 100 ms; return each probe's seconds from publish to visible in the database."""
    probe_device, probe_point = str(uuid.uuid4()), str(uuid.uuid4())
    topic = f"ts/{tenant}/{probe_device}/up"
    sent: dict[datetime, float] = {}
    seen: list[float] = []
    stop = threading.Event()

    def poll() -> None:
        with psycopg.connect(conn.info.dsn, autocommit=True) as reader:
            last = start - timedelta(seconds=1)
            while not stop.is_set() or len(seen) < len(sent):
                rows = reader.execute(
                    "SELECT m.ts FROM ts_measure m JOIN ts_series s USING (series_id)"
                    " WHERE s.device_id = %s AND s.point_id = %s AND m.ts > %s ORDER BY m.ts",
                    (probe_device, probe_point, last),
                ).fetchall()
                now = time.perf_counter()
                for (ts,) in rows:
                    if ts in sent:
                        seen.append(now - sent[ts])
                    last = ts
                if stop.is_set() and time.perf_counter() > deadline + 10:
                    return
                time.sleep(0.01)

    deadline = time.perf_counter() + seconds
    poller = threading.Thread(target=poll)
    poller.start()
    per_message = fleet.size / len(fleet.devices)
    interval = per_message / rate
    minute = 0
    began = time.perf_counter()
    published = 0
    next_probe = began
    probe_ts = start
    while time.perf_counter() < deadline:
        for topic_m, body in _messages(fleet, tenant, start + timedelta(minutes=minute), minute):
            now = time.perf_counter()
            if now >= deadline:
                break
            if now >= next_probe:
                probe_ts += timedelta(milliseconds=1)
                body_p = orjson.dumps({"ts": probe_ts.isoformat(), "values": {probe_point: 1.0}})
                sent[probe_ts] = time.perf_counter()
                publisher.publish(topic, body_p)
                next_probe += 0.1
            publisher.publish(topic_m, body)
            published += 1
            pause = began + published * interval - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
        minute += 1
    stop.set()
    poller.join()
    return seen
