"""Apply the idempotent SQL definitions (functions, triggers, views, grants) in traksense/db/sql.

Files run in name order inside one transaction, so a failed definition leaves the previous ones
in force.
"""

from __future__ import annotations

from pathlib import Path

from django.db import connections, transaction

SQL_DIR = Path(__file__).parent / "sql"


def definition_files() -> list[Path]:
    return sorted(SQL_DIR.glob("*.sql"))


def apply_definitions(using: str = "default") -> None:
    with transaction.atomic(using=using), connections[using].cursor() as cursor:
        # One migrate at a time: concurrent CREATE OR REPLACE of the same function can fail
        # with "tuple concurrently updated".
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext('traksense.sql_definitions'))")
        for path in definition_files():
            cursor.execute(path.read_text())
