"""Large rollup pages read in two halves at once, on two connections sharing one snapshot.

PostgreSQL reads and renders a page on one core: a 30-day page at 1 minute (43,200 rows) takes
about 50 ms, mostly rendering, while the machine's other cores wait. So the request's own
connection reads the first half of the range while a helper connection of the same process reads
the second half, in a thread (psycopg releases the GIL while it waits); the two rendered halves
are sent one after the other.

- **One snapshot.** GET requests run in a REPEATABLE READ transaction (tenant_reader). It exports
  its snapshot (pg_export_snapshot) and the helper's transaction imports it (SET TRANSACTION
  SNAPSHOT) before its first query, so both halves see exactly the data the request's own
  statements see. A transaction that is READ COMMITTED, or has written (a test's, whose rows the
  helper could not see), exports nothing, and its page is read whole on its own connection.
- **The same tenant and settings.** The helper binds its transaction the way the request's was
  bound (context.active_binding(): the same key through ts_bind_key, or the same tenant id on the
  owner's connection), on a connection of the same database alias and role, and carries the
  request's app.materialized_only; the read functions check the series' tenant in the database
  on both connections. A binding cannot be copied from one connection to another
  (15_tenant_binding.sql), so the helper makes its own.
- **Never cut.** Only a range that cannot hold more rows than the page's limit is split (a rollup
  has at most one row per bucket), so both halves are read whole and simply follow each other.
- **Worth it.** Only ranges of at least READ_SPLIT_BUCKETS buckets (settings): below that, the
  helper's few round trips cost more than half the rendering saves. Raw ranges are never split:
  their row count is not bounded by their length.
- **Failure.** If the helper fails (its connection was closed by a restart, say), waits for a lock
  too long or does not answer in time, the request's own connection reads the second half too,
  and the helper reconnects on its next use.

Each process holds at most one helper connection, opened on first use (so after gunicorn forks),
and one thread; requests of one process use them in turn.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

import psycopg
from django.db import connections
from psycopg import IsolationLevel, sql

from traksense.db.context import active_binding
from traksense.db.cursors import EXPLICIT_PREPARE_ONLY, connection_params, psycopg_cursor
from traksense.observability.metrics import READ_HALVES

log = logging.getLogger(__name__)

T = TypeVar("T")

APPLICATION_NAME = "traksense read helper"

# On the request's connection: its snapshot, exported only when the helper can share it, and the
# settings the helper must copy (the time zone is Django's, set on its connection).
EXPORT_SQL = """
SELECT CASE WHEN current_setting('transaction_isolation') <> 'read committed'
             AND pg_current_xact_id_if_assigned() IS NULL
            THEN pg_export_snapshot() END,
       current_setting('TimeZone'),
       coalesce(current_setting('app.materialized_only', true), '')
"""

# On the helper, after SET TRANSACTION SNAPSHOT: the request's own binding statement (the
# tenant, app_user, no parallel workers: context.active_binding()), then this: what
# use_materialized_only() did on the request's connection, Django's session time zone (to_json
# renders timestamps in it) and the lock timeout below; all transaction-local, so that nothing is
# left on a server connection that a pooler hands to another client. Parameters: [time zone,
# materialized_only, lock timeout].
SETTINGS_SQL = (
    "SELECT set_config('TimeZone', %s, true),"
    " set_config('app.materialized_only', %s, true), set_config('lock_timeout', %s, true)"
)

# The helper's lock waits are bounded, and so is the request's wait for the helper: a lock the
# helper queues for behind a DDL statement (partition creation, compression) that itself waits
# for the request's transaction is a deadlock PostgreSQL cannot see (the request waits in
# Python). The helper gives up after LOCK_TIMEOUT; a helper still busy after HELPER_WAIT_SECONDS
# (a pooler with no free server connection, a dead network) is cancelled and replaced. Either
# way the request reads the second half itself, where it already holds the locks it needs.
LOCK_TIMEOUT = "200ms"
HELPER_WAIT_SECONDS = 5.0


class Helper:
    """The helper connection of this process and the one thread that uses it."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="traksense-read")
        self._conn: psycopg.Connection[Any] | None = None
        self._using = ""

    def submit(self, work: Callable[[psycopg.Connection[Any]], T], using: str) -> Future[T]:
        """Run work(connection) on the helper thread, on a connection of database alias
        `using` (the request's: the same role)."""
        return self._pool.submit(self._run, work, using)

    def _run(self, work: Callable[[psycopg.Connection[Any]], T], using: str) -> T:
        if self._conn is not None and self._using != using:
            self._close()
        if self._conn is None or self._conn.closed:
            self._conn = _connect(using)
            self._using = using
        try:
            return work(self._conn)
        except BaseException:
            # The connection may be unusable now; the next use opens a new one.
            self._close()
            raise

    def abandon(self) -> None:
        """From any thread: cancel the running statement (libpq's cancel request) and stop
        taking work; the thread ends with that statement, closing its connection."""
        conn = self._conn
        if conn is not None and not conn.closed:
            conn.cancel()
        self._pool.shutdown(wait=False)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        """Close the connection (from the helper thread, which owns it) and stop the thread."""
        self._pool.submit(self._close).result()
        self._pool.shutdown()


def _connect(using: str) -> psycopg.Connection[Any]:
    params = connection_params(using)
    params["prepare_threshold"] = EXPLICIT_PREPARE_ONLY
    params["application_name"] = APPLICATION_NAME  # what it is, in pg_stat_activity
    conn: psycopg.Connection[Any] = psycopg.connect(**params)
    conn.isolation_level, conn.read_only = IsolationLevel.REPEATABLE_READ, True
    return conn


_helper: Helper | None = None
_helper_lock = threading.Lock()


def helper() -> Helper:
    global _helper
    with _helper_lock:
        if _helper is None:
            _helper = Helper()
        return _helper


def _abandon(stuck: Helper) -> None:
    """Stop using a helper whose statement outlived HELPER_WAIT_SECONDS, and let the next
    request start a new helper rather than queue behind this one's thread."""
    global _helper
    stuck.abandon()
    with _helper_lock:
        if _helper is stuck:
            _helper = None


def close_helper() -> None:
    """Close this process's helper connection, if any (tests, before the database is dropped)."""
    global _helper
    with _helper_lock:
        if _helper is not None:
            _helper.close()
            _helper = None


def _forget_helper_after_fork() -> None:
    # A forked child (gunicorn --preload, say) must not share its parent's helper: the
    # executor's thread does not exist in the child, and the connection's socket is the parent's.
    global _helper, _helper_lock
    _helper, _helper_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_helper_after_fork)


def read_in_halves(
    fetch: Callable[[psycopg.Cursor[Any], dict[str, object]], T],
    first: dict[str, object],
    second: dict[str, object],
) -> tuple[T, T] | None:
    """fetch(cursor, first) on the request's connection and fetch(cursor, second) on the helper,
    at once; None when the request's transaction cannot share its snapshot (the caller then reads
    the page whole). `fetch` runs a page statement with the parameters it is given on the cursor
    it is given, and returns what it needs of the answer."""
    binding = active_binding()
    if binding is None:
        return None  # not in a tenant block: nothing to bind the helper with
    using, bind_sql, bind_params = binding
    if any(connections[using].savepoint_ids):
        return None  # in a subtransaction, which cannot export its snapshot
    with psycopg_cursor() as cur:
        cur.execute(EXPORT_SQL, prepare=True)
        row = cur.fetchone()
    assert row is not None
    snapshot, time_zone, materialized_only = row
    if snapshot is None:
        return None

    def on_helper(conn: psycopg.Connection[Any]) -> T:
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
            cur.execute(bind_sql, bind_params, prepare=True)
            bound = cur.fetchone()
            if bound is None or bound[0] is None:
                raise RuntimeError("the helper's transaction could not be bound to the tenant")
            cur.execute(SETTINGS_SQL, [time_zone, materialized_only, LOCK_TIMEOUT], prepare=True)
            return fetch(cur, second)

    used = helper()
    try:
        pending: Future[T] | None = used.submit(on_helper, using)
    except RuntimeError as exc:  # no thread could be started, say
        log.warning("read helper unavailable (%s); reading the second half here", exc)
        pending = None
    with psycopg_cursor() as cur:
        mine = fetch(cur, first)
    if pending is not None:
        try:
            theirs = pending.result(timeout=HELPER_WAIT_SECONDS)
        except FutureTimeout:
            log.warning("read helper still busy after %s s; cancelled", HELPER_WAIT_SECONDS)
            if not pending.cancel():  # not queued behind another request's job: running
                _abandon(used)
        except Exception as exc:  # the helper's statement failed: read it here instead
            log.warning("read helper failed (%s); reading the second half here", exc)
        else:
            READ_HALVES.labels("helper").inc()
            return mine, theirs
    with psycopg_cursor() as cur:
        theirs = fetch(cur, second)
    READ_HALVES.labels("request").inc()
    return mine, theirs
