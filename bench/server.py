"""The PostgreSQL server every bench measures on: the one TrakSense itself uses."""

from __future__ import annotations

import http.client
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from psycopg.conninfo import conninfo_to_dict

from traksense.core.webserver import gunicorn_argv


def server_conninfo() -> dict[str, Any]:
    """Connection parameters of the server TrakSense uses, as its owner (no database name):
    DATABASE_URL's server, or the embedded one under TRAKSENSE_HOME."""
    from traksense import settings

    if settings.EMBEDDED_DATABASE:
        from traksense.db import embedded

        # Attaching keeps the embedded server up for this process's lifetime.
        return {"host": embedded.ensure_running(settings.TRAKSENSE_HOME), "user": embedded.USER}
    params = dict(conninfo_to_dict(settings.DATABASE_URL))
    params.pop("dbname", None)
    return params


@contextmanager
def fresh_database(name: str, keep: bool = False) -> Iterator[str]:
    """A new database `name` on that server, migrated; yields its conninfo, drops it after
    (unless `keep`)."""
    import os

    import psycopg
    from psycopg.conninfo import make_conninfo

    server = server_conninfo()
    admin_info = make_conninfo(**server, dbname="postgres")
    with psycopg.connect(admin_info, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    conninfo = make_conninfo(**server, dbname=name)
    env = {**os.environ, "DATABASE_URL": conninfo, "SCHEDULER_ENABLED": "false"}
    subprocess.run([sys.executable, "-m", "traksense", "migrate", "-v", "0"], env=env, check=True)
    try:
        yield conninfo
    finally:
        if not keep:
            with psycopg.connect(admin_info, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def running_api(
    env: dict[str, str],
    workers: int = 2,
    timeout: int = 120,
    argv: Callable[[str, int], list[str]] | None = None,
) -> Iterator[int]:
    """The API as `traksense serve` runs it (core/webserver.py), with `workers` workers on a free
    loopback port, for the block; yields the port once the API answers. `env` names the database
    (DATABASE_URL). `argv(bind, workers)`: another command line, for a comparison."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    bind = f"127.0.0.1:{port}"
    command = (
        argv(bind, workers) if argv else gunicorn_argv(bind, workers, timeout=timeout, quiet=True)
    )
    proc = subprocess.Popen(command, env=env)
    try:
        _wait_for(port, proc)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _wait_for(port: int, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(300):
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {proc.returncode}")
        try:
            # Any answer means up. (Not /healthz: without a scheduler it answers 503, which
            # Django logs as an error in the bench's output.)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/openapi.json")
            conn.getresponse().read()
            conn.close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("gunicorn did not come up")
