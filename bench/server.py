"""The PostgreSQL server every bench measures on: the one TrakSense itself uses."""

from __future__ import annotations

from typing import Any

from psycopg.conninfo import conninfo_to_dict


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
