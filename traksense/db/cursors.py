"""A plain psycopg cursor on Django's connection, for the hot paths.

Django's own cursor binds parameters client-side (ClientCursor) and never prepares statements;
its default loaders also parse every timestamptz in Python. The request path's few statements
run instead on a psycopg cursor of the same connection, hence in the same transaction, with
server-side parameters and, where asked (execute(prepare=True)), prepared once per connection.
"""

from __future__ import annotations

from typing import Any

import psycopg
from django.db import connections

# Django opens connections with prepare_threshold=None (no prepared statements, for poolers),
# which also makes psycopg ignore execute(prepare=True). A threshold no statement reaches keeps
# Django's own queries unprepared while letting the hot paths prepare the statements they name.
EXPLICIT_PREPARE_ONLY = 2**31


def psycopg_cursor(using: str | None = None) -> psycopg.Cursor[Any]:
    """A psycopg cursor on Django's connection `using`, inside its current transaction; by
    default the connection of the current tenant block (the API's web connection in a request),
    else "default"."""
    if using is None:
        from traksense.db.context import active_alias  # context.py imports this module

        using = active_alias()
    connection = connections[using]
    connection.ensure_connection()
    raw = connection.connection
    assert raw is not None
    if raw.prepare_threshold is None:
        raw.prepare_threshold = EXPLICIT_PREPARE_ONLY
    return psycopg.Cursor(raw)


def connection_params(using: str = "default") -> dict[str, Any]:
    """psycopg.connect() parameters for another connection to the database of Django's
    connection `using` (the embedded server's socket included), without Django's own keys."""
    params: dict[str, Any] = connections[using].get_connection_params()
    for django_only in ("cursor_factory", "context"):
        params.pop(django_only, None)
    return params
