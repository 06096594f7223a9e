"""The API as `traksense serve` runs it (core/webserver.py, traksense/asgi.py), over real sockets:
slow and idle clients do not starve ordinary requests, and the front hands Django requests and
answers unchanged.

Before (issue 20): 64 connections sending half a request each left `/healthz` unanswered with two
sync workers. Here every hostile connection stays incomplete while the ordinary requests run, so
a server that gave them a worker would never answer: the socket timeout below only turns such a
hang into a failure, it times nothing.
"""

from __future__ import annotations

import http.client
import socket
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import orjson
import pytest

from bench.clients import read_answer
from bench.server import running_api
from traksense.conftest import TenantFixture
from traksense.core.webserver import raise_open_files_limit
from traksense.rollups.test_jobs_support import subprocess_env

HANG = 60.0  # seconds: only a hang waits this long
HALF_REQUESTS = 64
SLOW_BODIES = 64
IDLE = 1000
DEV, PT = str(uuid.uuid4()), str(uuid.uuid4())


@pytest.fixture
def served(committed_db: None) -> Iterator[int]:
    """`traksense serve`'s web server (two workers) on a free port, on this test's database."""
    raise_open_files_limit(4 * (HALF_REQUESTS + SLOW_BODIES + IDLE))
    with running_api(subprocess_env("traksense web test"), workers=2) as port:
        yield port


def request(
    port: int, method: str, path: str, key: str | None = None, body: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=HANG)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if body is not None:
        headers["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def samples_body(*values: float) -> bytes:
    return orjson.dumps(
        {
            "samples": [
                {"device_id": DEV, "point_id": PT, "ts": f"2026-12-01T00:00:{i:02d}Z", "value": v}
                for i, v in enumerate(values)
            ]
        }
    )


@contextmanager
def hostile_clients(port: int, key: str, body: bytes) -> Iterator[list[socket.socket]]:
    """Half requests, bodies that have sent one byte of `body`, and idle kept-alive connections
    (one whole request each, its answer never read): all open for the block. Yields the slow
    bodies' sockets, so that the test can finish one."""
    with ExitStack() as stack:

        def connect() -> socket.socket:
            return stack.enter_context(socket.create_connection(("127.0.0.1", port), HANG))

        for _ in range(HALF_REQUESTS):
            connect().sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nAuthorization: Bea")
        bodies = []
        head = (
            "POST /data/points HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {key}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        for _ in range(SLOW_BODIES):
            sock = connect()
            sock.sendall(head + body[:1])
            bodies.append(sock)
        for _ in range(IDLE):
            connect().sendall(b"GET /openapi.json HTTP/1.1\r\nHost: t\r\n\r\n")
        yield bodies


def test_slow_and_idle_clients_do_not_starve_ordinary_requests(
    served: int, tenant_a: TenantFixture
) -> None:
    body = samples_body(1.5, 2.5)
    with hostile_clients(served, tenant_a.key, body) as slow_bodies:
        # Every hostile connection is still incomplete: ordinary requests of every kind answer.
        for _ in range(5):
            assert request(served, "GET", "/data/series", tenant_a.key)[0] == 200
            status, _, answer = request(served, "POST", "/data/points", tenant_a.key, body)
            assert status == 200, answer
        # A slow body that finishes at last is served like any other: the same two samples
        # again, idempotent.
        slow = slow_bodies[0]
        for byte in body[1:]:
            slow.sendall(bytes([byte]))
        status, answer = read_answer(slow)
        assert status == 200, answer
        assert orjson.loads(answer) == {"accepted": 0, "duplicates": 2, "overwritten": 0}
    status, _, page = request(
        served,
        "GET",
        f"/data/points?device_id={DEV}&point_id={PT}&agg=raw"
        "&start=2026-12-01T00:00:00Z&end=2026-12-01T00:01:00Z",
        tenant_a.key,
    )
    assert status == 200
    assert [row["v"] for row in orjson.loads(page)["data"]] == [1.5, 2.5]


def test_a_body_over_the_limit_is_refused_before_it_is_read(
    served: int, tenant_a: TenantFixture, settings: Any
) -> None:
    too_long = settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1
    with socket.create_connection(("127.0.0.1", served), HANG) as sock:
        sock.sendall(
            b"POST /data/points HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {tenant_a.key}\r\nContent-Length: {too_long}\r\n\r\n".encode()
        )
        # Nothing of the body was sent: the answer comes from the header alone.
        status, answer = read_answer(sock)
    assert status == 413
    assert orjson.loads(answer)["error"]["code"] == "body_too_large"
    # Sent in chunks with no length, the body is cut off as soon as it passes the limit.
    chunk = b"x" * 65536
    with socket.create_connection(("127.0.0.1", served), HANG) as sock:
        sock.sendall(
            b"POST /data/points HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {tenant_a.key}\r\n".encode()
            + b"Transfer-Encoding: chunked\r\n\r\n"
        )
        try:
            for _ in range(too_long // len(chunk) + 2):
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except OSError:
            pass  # the server may close as soon as it has answered
        status, answer = read_answer(sock)
    assert status == 413
    assert request(served, "GET", "/data/series", tenant_a.key)[0] == 200


def test_the_front_hands_django_the_request_and_the_answer_unchanged(
    served: int, tenant_a: TenantFixture, tenant_b: TenantFixture
) -> None:
    assert request(served, "POST", "/data/points", tenant_a.key, samples_body(7.0))[0] == 200
    # Query string with percent-encoding (the '+' of an offset), CSV (a streamed answer).
    path = (
        f"/data/points?device_id={DEV}&point_id={PT}&agg=raw&format=csv"
        "&start=2026-12-01T01:00:00%2B01:00&end=2026-12-01T00:01:00Z"
    )
    status, headers, body = request(served, "GET", path, tenant_a.key)
    assert status == 200, body
    assert headers["content-type"].startswith("text/csv")
    assert body.decode().splitlines()[1:] == ["2026-12-01T00:00:00+00:00,7"]
    assert int(headers["content-length"]) == len(body)
    # Byte for byte what Django's own test client gets (CSV and JSON, with the series' catalog).
    for same in (path, path.replace("&format=csv", ""), "/data/series"):
        direct = tenant_a.client.get(same)
        assert request(served, "GET", same, tenant_a.key)[::2] == (
            direct.status_code,
            b"".join(direct) if direct.streaming else direct.content,
        )
    # HEAD: Django's status, never a body.
    status, headers, body = request(served, "HEAD", path, tenant_a.key)
    assert (status, body) == (tenant_a.client.head(path).status_code, b"")
    # Another tenant's key: 404 for the series, as through Django's own test client.
    status, _, body = request(served, "GET", path, tenant_b.key)
    assert status == 404
    assert orjson.loads(body)["error"]["code"] == "not_found"
    # A body sent in chunks, without Content-Length, reaches Django whole.
    body = samples_body(7.0, 8.0)
    with socket.create_connection(("127.0.0.1", served), HANG) as sock:
        sock.sendall(
            b"POST /data/points HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {tenant_a.key}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
            + b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in (body[:10], body[10:]))
            + b"0\r\n\r\n"
        )
        status, answer = read_answer(sock)
    assert status == 200, answer
    assert orjson.loads(answer) == {"accepted": 1, "duplicates": 1, "overwritten": 0}
    # No key, an unknown path: Django's answers, through the front.
    assert request(served, "GET", path)[0] == 401
    assert request(served, "GET", "/no/such/path", tenant_a.key)[0] == 404
