"""tenant_context(): the one way to act for a tenant.

It opens a transaction, sets app.tenant_id with set_config(..., true) (transaction-local) and
switches to app_user the same way. Both end with the transaction, so a pooled connection never
carries one request's tenant or role into the next. No session-level SET anywhere.
key_tenant_context() does the same for the tenant of an API key, found in the same statement.

A read-only caller (reader=True) gets a REPEATABLE READ, READ ONLY transaction: every statement
of the request sees one snapshot, which a second connection can share (traksense/points/split.py
reads large pages in two halves that way), and the request cannot write by mistake.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from django.db import connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper
from psycopg import IsolationLevel

from traksense.db.cursors import psycopg_cursor

RUNTIME_ROLE = "app_user"

# The statements select (tenant_id, the role before, ...) and switch the transaction over in
# their target list; PostgreSQL evaluates it left to right, so current_user is read first.
# A request's statements touch one tenant's few series: parallel workers never pay off there,
# and the planner, misled by the real-time branches, would otherwise start some for nothing
# (65_read.sql). Transaction-local like the rest, and free here.
_SWITCH = (
    "current_user::text, set_config('app.tenant_id', {0}::text, true),"
    " set_config('max_parallel_workers_per_gather', '0', true), set_config('role', %s, true)"
)
# Parameters: [tenant, tenant, RUNTIME_ROLE]. (Public for the read helper, points/split.py, and
# the API bench's direct SQL.)
BY_TENANT_SQL = "SELECT %s::uuid, " + _SWITCH.format("%s")
# A key that is unknown or revoked selects no row, so nothing is switched.
_BY_KEY = (
    "SELECT k.tenant_id, "
    + _SWITCH.format("k.tenant_id")
    + " FROM api_key k WHERE k.key_hash = %s AND k.revoked_at IS NULL"
)


@contextmanager
def _switched(
    statement: str, params: Sequence[str], using: str, reader: bool = False
) -> Iterator[tuple[uuid.UUID | None, CursorWrapper]]:
    connection = connections[using]
    nested = connection.in_atomic_block
    restore: Callable[[], None] | None = None
    try:
        with transaction.atomic(using=using), connection.cursor() as cursor:
            if reader and not nested:
                restore = _begin_as_reader(connection)
            # Prepared, on a psycopg cursor of the same connection: a request's first statement.
            with psycopg_cursor(using) as switch:
                switch.execute(statement, params, prepare=True)
                row = switch.fetchone()
            if row is None:
                yield None, cursor
                return
            if row[1] == RUNTIME_ROLE:
                raise RuntimeError("tenant_context() cannot be nested")
            yield row[0], cursor
            if nested:
                cursor.execute("SET LOCAL ROLE NONE")
                cursor.execute("SELECT set_config('app.tenant_id', '', true)")
    finally:
        if restore is not None:
            restore()


def _begin_as_reader(connection: BaseDatabaseWrapper) -> Callable[[], None]:
    """Make the transaction the connection is about to begin REPEATABLE READ, READ ONLY, and
    return what puts the connection's mode back once that transaction is over. Called inside
    atomic(), after Django's health check has settled which connection it is and before the first
    statement: psycopg then puts the mode in the BEGIN it sends, no round trip of its own."""
    raw = connection.connection
    assert raw is not None
    before = (raw.isolation_level, raw.read_only)
    raw.isolation_level, raw.read_only = IsolationLevel.REPEATABLE_READ, True

    def restore() -> None:
        if not raw.closed:
            raw.isolation_level, raw.read_only = before

    return restore


@contextmanager
def tenant_context(
    tenant_id: uuid.UUID | str, using: str = "default", reader: bool = False
) -> Iterator[CursorWrapper]:
    """Run the block in a transaction as app_user for `tenant_id`; yields a cursor. reader=True:
    a REPEATABLE READ, READ ONLY transaction (see the module's docstring)."""
    tenant = str(uuid.UUID(str(tenant_id)))
    with _switched(BY_TENANT_SQL, [tenant, tenant, RUNTIME_ROLE], using, reader) as (_, cursor):
        yield cursor


@contextmanager
def key_tenant_context(
    key_hash: str, using: str = "default", reader: bool = False
) -> Iterator[uuid.UUID | None]:
    """Run the block in a transaction as app_user for the tenant of the live API key whose hash
    is `key_hash`, and yield that tenant; yield None, switching nothing, for an unknown or revoked
    key. One round trip for the key lookup and the switch. reader=True: a REPEATABLE READ, READ
    ONLY transaction (see the module's docstring)."""
    with _switched(_BY_KEY, [RUNTIME_ROLE, key_hash], using, reader) as (tenant, _):
        yield tenant
