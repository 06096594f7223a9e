"""Django's PostgreSQL backend, taught to start the embedded server on first connection.

Starting it lazily (rather than when settings are read) keeps imports free of side effects:
ruff, mypy and `traksense --help` never start a database.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.db.backends.postgresql import base

from traksense.db import embedded


class DatabaseWrapper(base.DatabaseWrapper):
    def get_connection_params(self) -> dict[str, Any]:
        params: dict[str, Any] = super().get_connection_params()
        home = params.pop("embedded_home", None)
        if home:
            params["host"] = embedded.ensure_running(Path(home))
            params.pop("port", None)
        return params
