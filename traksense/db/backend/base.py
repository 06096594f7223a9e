"""Django's PostgreSQL backend, taught to start the embedded server on first connection, and to
health-check a reused connection without a round trip.

Starting it lazily (rather than when settings are read) keeps imports free of side effects:
ruff, mypy and `traksense --help` never start a database.
"""

from __future__ import annotations

import select
from pathlib import Path
from typing import Any

from django.db.backends.postgresql import base
from psycopg.pq import TransactionStatus

from traksense.db import embedded

_USABLE = (TransactionStatus.IDLE, TransactionStatus.INTRANS)


class DatabaseWrapper(base.DatabaseWrapper):
    def get_connection_params(self) -> dict[str, Any]:
        params: dict[str, Any] = super().get_connection_params()
        home = params.pop("embedded_home", None)
        if home:
            params["host"] = embedded.ensure_running(Path(home))
            params.pop("port", None)
        return params

    def is_usable(self) -> bool:
        # CONN_HEALTH_CHECKS asks this before every request reuses a connection. Django's own
        # check is a SELECT 1: a round trip per request. An idle connection has nothing to
        # read, so a readable socket means the server closed it or sent its termination
        # notice (restart, pg_terminate_backend, idle timeout): that is the check, for free.
        # A connection that dies silently fails its request instead, and Django drops it.
        # Like Django's SELECT 1, an aborted transaction (or a busy connection) is not usable.
        connection = self.connection
        if connection is None or connection.closed:
            return False
        if connection.info.transaction_status not in _USABLE:
            return False
        try:
            readable, _, _ = select.select([connection.fileno()], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable
