"""The API behind an asynchronous front: slow and idle clients cost a socket, not a worker.

A sync WSGI worker reads its request itself, so a client that sends its headers or body byte by
byte holds the worker until it is done: 64 such clients left `/healthz` unanswered with two sync
workers (issue 20). Here the server (gunicorn's uvicorn worker, see `serve`) parses requests
on an event loop, this module reads the whole body there too, and only a complete request
reaches Django, which runs in exactly one thread per process, as in a sync worker: one request
at a time, one database connection (and one read helper, points/split.py) per process. The
answer is collected in that thread and written back by the loop, so a client that reads slowly
does not hold the thread either.

Bodies over DATA_UPLOAD_MAX_MEMORY_SIZE (INGEST_MAX_BYTES) are refused with 413 as soon as
their Content-Length, or the bytes received, pass it: the front never buffers more than Django
would accept.
"""

from __future__ import annotations

import asyncio
import io
import os
import sys
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import unquote_to_bytes

import orjson

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "traksense.settings")

from django.conf import settings  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

wsgi_application = get_wsgi_application()
# One thread: Django's database connections are per thread, and the rest of the code (the read
# helper, the series cache) assumes a process serves one request at a time.
_django = ThreadPoolExecutor(max_workers=1, thread_name_prefix="traksense-web")


class Turns:
    """Whose request goes to the Django thread next: round robin over the API keys waiting,
    not arrival order. A tenant with twenty requests queued in this process would otherwise
    put another tenant's one behind all twenty; now it waits for at most one request of each
    other key. A scheduling order, not a limit: the limits (429) live in PostgreSQL, shared
    by every process (ingest/limits.py; the read slots of db/context.py)."""

    def __init__(self) -> None:
        self._busy = False
        # Keys in turn order (a dict keeps insertion order), each with its waiting requests.
        self._waiting: dict[str, deque[asyncio.Future[None]]] = {}

    @asynccontextmanager
    async def turn(self, who: str) -> AsyncIterator[None]:
        await self._acquire(who)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, who: str) -> None:
        if not self._busy:
            self._busy = True
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(who, deque()).append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()  # the turn came with the cancellation: pass it on
            else:
                queue = self._waiting.get(who)
                if queue is not None and waiter in queue:
                    queue.remove(waiter)
                    if not queue:
                        del self._waiting[who]
            raise

    def _release(self) -> None:
        while self._waiting:
            who = next(iter(self._waiting))
            queue = self._waiting.pop(who)
            waiter = queue.popleft()
            if queue:
                self._waiting[who] = queue  # to the back of the line
            if not waiter.done():
                waiter.set_result(None)
                return
        self._busy = False


_turns = Turns()


class BodyTooLarge(Exception):
    pass


class Disconnected(Exception):
    pass


async def application(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] != "http":  # websockets: not served
        return
    try:
        body = await _read_body(scope, receive, settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
    except Disconnected:
        return
    except BodyTooLarge:
        await _too_large(send)
        return
    environ = _environ(scope, body)
    async with _turns.turn(environ.get("HTTP_AUTHORIZATION", "")):
        loop = asyncio.get_running_loop()
        status, headers, chunks = await loop.run_in_executor(_django, _call, environ)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    # One message: an answer's parts can be many small pieces (a page's rendered rows), and
    # each message is a write of its own.
    await send({"type": "http.response.body", "body": b"".join(chunks)})


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise BodyTooLarge
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        body += message.get("body", b"")
        if len(body) > limit:
            raise BodyTooLarge
        if not message.get("more_body", False):
            return bytes(body)


async def _too_large(send: Send) -> None:
    # The same answer Django's views give (ingest/views.py), without entering Django.
    body = orjson.dumps({"error": {"code": "body_too_large", "message": "request body too large"}})
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _environ(scope: Scope, body: bytes) -> dict[str, Any]:
    """PEP 3333's environ from an ASGI HTTP scope (strings are latin-1 of the raw bytes)."""
    server = scope.get("server") or ("localhost", 80)
    client = scope.get("client") or ("", 0)
    path = scope.get("raw_path") or scope["path"].encode()
    root = scope.get("root_path", "").encode()
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": root.decode("latin-1"),
        "PATH_INFO": unquote_to_bytes(path.split(b"?", 1)[0])[len(root) :].decode("latin-1"),
        "QUERY_STRING": scope["query_string"].decode("latin-1"),
        "SERVER_NAME": server[0],
        "SERVER_PORT": str(server[1]),
        "SERVER_PROTOCOL": f"HTTP/{scope['http_version']}",
        "REMOTE_ADDR": client[0],
        "REMOTE_PORT": str(client[1]),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    for name, value in scope["headers"]:
        key = name.decode("latin-1").upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        text = value.decode("latin-1")
        environ[key] = f"{environ[key]},{text}" if key in environ else text
    # The body is whole here: its length is known even when it came chunked (no Content-Length,
    # which Django would read as an empty body).
    environ["CONTENT_LENGTH"] = str(len(body))
    return environ


def _call(environ: dict[str, Any]) -> tuple[int, list[tuple[bytes, bytes]], list[bytes]]:
    """Run Django on one request and collect its whole answer (in the Django thread)."""
    started: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started[:] = [status, headers]
        return lambda data: chunks.append(data)

    chunks: list[bytes] = []
    result: Iterable[bytes] = wsgi_application(environ, start_response)
    try:
        chunks.extend(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    status, headers = started
    code = int(status.split(" ", 1)[0])
    encoded = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    # The whole answer is here: say its length rather than let the server send it chunked.
    if code >= 200 and code not in (204, 304) and all(k != b"content-length" for k, _ in encoded):
        encoded.append((b"content-length", str(sum(map(len, chunks))).encode()))
    return code, encoded, chunks


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            _django.shutdown(wait=True)
            await send({"type": "lifespan.shutdown.complete"})
            return
