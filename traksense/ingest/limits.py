"""Admission of an ingest batch under its tenant's ingest rate (samples per second).

The token bucket lives in PostgreSQL (ts_admit_ingest, 15_tenant_binding.sql), so every gunicorn
worker and every process shares it. Admission runs as a statement of its own on the API's
connection, committed before the write's transaction begins: the bucket's row is locked only
for that statement, so one tenant's batches never wait for each other there, and another
tenant's never touch that row.
"""

from __future__ import annotations

from typing import NamedTuple

from django.conf import settings

from traksense.db.cursors import psycopg_cursor

_ADMIT = "SELECT tenant_id, read_only, refused, retry_after FROM public.ts_admit_ingest(%s, %s)"


class Admission(NamedTuple):
    known: bool  # a live key
    read_only: bool
    refused: str | None  # the limit's name
    retry_after: float


def admit(key: str, samples: int) -> Admission:
    using = settings.API_DATABASE
    with psycopg_cursor(using) as cursor:
        cursor.execute(_ADMIT, [key, samples], prepare=True)
        row = cursor.fetchone()
    if row is None:
        return Admission(False, False, None, 0.0)
    return Admission(True, bool(row[1]), row[2], float(row[3] or 0.0))
