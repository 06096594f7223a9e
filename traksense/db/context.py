"""tenant_context() and key_tenant_context(): the ways to act for a tenant.

Both open a transaction, bind it to the tenant inside the database and switch to app_user with
set_config(..., true) (transaction-local). The binding (15_tenant_binding.sql) is a grant only
the database can mint and only this transaction on this backend can use: the API's web role
gets it from an API key (key_tenant_context, ts_bind_key), the owner's connections (jobs, CLI,
tests, the MQTT consumer) from a tenant id (tenant_context, ts_bind_tenant, which only the owner
may execute). Both end with the transaction, so a pooled connection never carries one request's
tenant or role into the next. No session-level SET anywhere.

A read-only caller (reader=True) gets a REPEATABLE READ, READ ONLY transaction: every statement
of the request sees one snapshot, which a second connection can share (traksense/points/split.py
reads large pages in two halves that way, binding its own transaction the same way), and the
request cannot write by mistake.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, NamedTuple

from django.db import connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper
from psycopg import IsolationLevel

from traksense.db.cursors import psycopg_cursor

RUNTIME_ROLE = "app_user"


class KeyBinding(NamedTuple):
    """What key_tenant_context() yields for a live key: its tenant, id and scope, and `refused`,
    the name of the tenant limit that refused the request (then nothing is bound)."""

    tenant_id: uuid.UUID
    key_id: int
    read_only: bool
    refused: str | None


# The statements select (tenant_id, the role before, ...) and switch the transaction over in
# their target list; PostgreSQL evaluates it left to right, so current_user is read first.
# A request's statements touch one tenant's few series: parallel workers never pay off there,
# and the planner, misled by the real-time branches, would otherwise start some for nothing
# (65_read.sql). Transaction-local like the rest, and free here.
_NO_PARALLEL = "set_config('max_parallel_workers_per_gather', '0', true)"
# Parameters: [tenant, tenant, RUNTIME_ROLE]. (Public for the read helper, points/split.py, and
# the API bench's direct SQL.) ts_bind_tenant() runs before the switch to app_user, which may
# not execute it.
BY_TENANT_SQL = (
    "SELECT %s::uuid, current_user::text, public.ts_bind_tenant(%s::uuid), "
    + _NO_PARALLEL
    + ", set_config('role', %s, true)"
)
# Parameters: [RUNTIME_ROLE, key, read_slot]. A key that is unknown, revoked or expired selects
# no row, so nothing is switched; a refused one (a tenant limit) switches nothing either.
BY_KEY_SQL = (
    "SELECT b.tenant_id, current_user::text, b.key_id, b.read_only, b.refused, "
    + _NO_PARALLEL
    + ", CASE WHEN b.refused IS NULL THEN set_config('role', %s, true) END"
    " FROM public.ts_bind_key(%s, %s) b"
)

# How the current block's transaction was bound: (alias, statement, parameters), so that the
# read helper (points/split.py) can bind its own transaction the same way.
_binding: ContextVar[tuple[str, str, list[object]] | None] = ContextVar("binding", default=None)


def active_binding() -> tuple[str, str, list[object]] | None:
    """(alias, statement, parameters) binding the current tenant block's transaction, or None
    outside one: run the statement on another connection of that database, in a transaction,
    to act for the same tenant with the same credential (its first column is the tenant)."""
    return _binding.get()


def active_alias() -> str:
    """The database alias of the current tenant block ("default" outside one)."""
    bound = _binding.get()
    return bound[0] if bound is not None else "default"


@contextmanager
def _switched(
    statement: str,
    params: Sequence[object],
    using: str,
    reader: bool = False,
    rebind: tuple[str, list[object]] | None = None,
) -> Iterator[tuple[Any, CursorWrapper]]:
    bound = _binding.get()
    if bound is not None and bound[0] == using:
        raise RuntimeError("tenant_context() cannot be nested")
    connection = connections[using]
    nested = connection.in_atomic_block
    restore: Callable[[], None] | None = None
    token = None
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
            if rebind is not None:
                token = _binding.set((using, *rebind))
            yield row, cursor
            if nested:
                cursor.execute("SET LOCAL ROLE NONE")
                cursor.execute("SELECT set_config('traksense.tenant_grant', '', true)")
    finally:
        if token is not None:
            _binding.reset(token)
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
    a REPEATABLE READ, READ ONLY transaction (see the module's docstring). The owner's way in:
    on a connection of any other role, ts_bind_tenant() is refused."""
    tenant = str(uuid.UUID(str(tenant_id)))
    params: list[object] = [tenant, tenant, RUNTIME_ROLE]
    with _switched(BY_TENANT_SQL, params, using, reader, (BY_TENANT_SQL, params)) as (_, cursor):
        yield cursor


@contextmanager
def key_tenant_context(
    key: str, using: str = "default", reader: bool = False, read_slot: bool = False
) -> Iterator[KeyBinding | None]:
    """Run the block in a transaction as app_user for the tenant of the live API key `key` (not
    revoked, not expired), bound by the database itself (ts_bind_key), and yield its KeyBinding;
    yield None, switching nothing, for an unknown key. One round trip for the key check and the
    switch. read_slot=True: also take one of the tenant's read slots (its read_concurrency);
    when none is free the binding's `refused` says so and nothing is switched. reader=True: a
    REPEATABLE READ, READ ONLY transaction (see the module's docstring)."""
    params: list[object] = [RUNTIME_ROLE, key, read_slot]
    again: list[object] = [RUNTIME_ROLE, key, False]
    with _switched(BY_KEY_SQL, params, using, reader, (BY_KEY_SQL, again)) as (row, _):
        if row is None:
            yield None
        else:
            yield KeyBinding(row[0], int(row[2]), bool(row[3]), row[4])
