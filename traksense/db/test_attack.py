"""The security wall, tried as an attacker would (DESIGN §6, docs/tenancy.md's threat model).

The attacker holds a connection of the web role (the API's own login) and tenant A's key, runs
any SQL it likes, and wants one row of tenant B, to read or to write. Relations and functions are
enumerated from the catalogs, so a table, view, partition or SECURITY DEFINER function added
later is attacked here without anyone listing it.
"""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from django.db import connection
from psycopg import sql

from traksense.db.context import tenant_context
from traksense.db.cursors import connection_params
from traksense.db.webrole import web_role, web_role_problems
from traksense.rollups.compression import compress_tier
from traksense.rollups.refresh import refresh_all
from traksense.tenancy.keys import create_key, hash_key
from traksense.tenancy.models import Tenant

pytestmark = pytest.mark.django_db(transaction=True)

INGEST = (
    "SELECT * FROM ts_ingest(%s::text[], %s::text[], %s::timestamptz[], %s::float8[],"
    " %s::boolean[], %s::text[])"
)
TENANT_VIEWS = {
    "ts_series_tenant",
    "ts_measure_tenant",
    "ts_measure_1m_tenant",
    "ts_measure_5m_tenant",
    "ts_measure_1h_tenant",
}
# B's numbers and texts: nothing of A's looks like them.
SECRET_NUMBER = 31337.0
SECRET_TEXT = "B-secret"


@dataclass
class World:
    a: uuid.UUID
    b: uuid.UUID
    key_a: str
    key_a_read_only: str
    key_b: str
    b_device: str
    b_point: str
    b_text_point: str
    b_series: list[int]

    def markers(self) -> list[str]:
        """What may never appear in anything the attacker gets back."""
        return [
            str(self.b),
            self.b_device,
            self.b_point,
            self.b_text_point,
            self.key_b,
            hash_key(self.key_b),
            "31337",
            SECRET_TEXT,
        ]


def _write(
    tenant: uuid.UUID, device: str, point: str, start: dt.datetime, values: list[Any]
) -> None:
    n = len(values)
    numbers = [v if isinstance(v, float) else None for v in values]
    texts = [v if isinstance(v, str) else None for v in values]
    with tenant_context(tenant) as cursor:
        cursor.execute(
            INGEST,
            [
                [device] * n,
                [point] * n,
                [start + dt.timedelta(seconds=10 * i) for i in range(n)],
                numbers if any(x is not None for x in numbers) else None,
                None,
                texts if any(x is not None for x in texts) else None,
            ],
        )


@pytest.fixture
def world(committed_db: None) -> World:
    a = Tenant.objects.create(name="attacker A")
    b = Tenant.objects.create(name="victim B")
    key_a, key_b = create_key(a), create_key(b)
    key_a_read_only = create_key(a, read_only=True)
    old = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=12)
    recent = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=3)
    a_device, a_point = str(uuid.uuid4()), str(uuid.uuid4())
    b_device, b_point, b_text = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    for start in (old, recent):
        _write(a.id, a_device, a_point, start, [float(i) for i in range(60)])
        _write(b.id, b_device, b_point, start, [SECRET_NUMBER + i for i in range(60)])
        _write(b.id, b_device, b_text, start, [SECRET_TEXT] * 30)
    # Every store holds some of B: raw, each rollup tier, the compressed rollups, pending
    # invalidations (late data below the watermark, written after the refresh).
    refresh_all()
    # The old day's partition only (at any time of day: `recent` may lie in yesterday's).
    compress_tier("1m", older_than_days=1)
    _write(b.id, b_device, b_point, old + dt.timedelta(seconds=5), [SECRET_NUMBER])
    with connection.cursor() as cursor:
        cursor.execute("SELECT series_id FROM ts_series WHERE tenant_id = %s", [b.id])
        b_series = [row[0] for row in cursor.fetchall()]
    return World(a.id, b.id, key_a, key_a_read_only, key_b, b_device, b_point, b_text, b_series)


@pytest.fixture
def attacker(world: World) -> Iterator[psycopg.Connection[Any]]:
    conn = psycopg.connect(**connection_params("web"), autocommit=True)
    try:
        yield conn
    finally:
        conn.close()


def b_fingerprint(world: World) -> list[Any]:
    """Everything of B in every store, as the owner sees it: any write shows here."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT c.relname::text FROM pg_class c
            JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'series_id'
            WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
              AND NOT c.relispartition
            ORDER BY 1
            """
        )
        tables = [row[0] for row in cursor.fetchall()]
        out: list[Any] = []
        for table in tables:
            cursor.execute(
                sql.SQL(
                    "SELECT count(*), sum(hashtext(t::text)) FROM {} t WHERE series_id = ANY(%s)"
                )
                .format(sql.Identifier(table))
                .as_string(None),
                [world.b_series],
            )
            out.append((table, cursor.fetchone()))
        cursor.execute(
            "SELECT count(*), sum(hashtext(k::text)) FROM api_key k WHERE tenant_id = %s", [world.b]
        )
        out.append(("api_key", cursor.fetchone()))
        cursor.execute("SELECT t::text FROM tenant t WHERE id = %s", [world.b])
        out.append(("tenant", cursor.fetchone()))
    return out


def one(conn: psycopg.Connection[Any], statement: str, params: list[Any] | None = None) -> Any:
    """The one row `statement` answers."""
    row = conn.execute(statement, params).fetchone()
    assert row is not None
    return row


class Attempt:
    """Runs the attacker's statements, each in a transaction bound to A, and keeps whatever
    they answered (an error is an answer too: nothing to keep)."""

    def __init__(self, conn: psycopg.Connection[Any], world: World) -> None:
        self.conn = conn
        self.world = world
        self.answers: list[tuple[str, str]] = []

    def run(
        self,
        statement: str,
        params: list[Any] | None = None,
        bind: bool = True,
        first: tuple[str, list[Any]] | None = None,
    ) -> bool:
        """Whether the statement ran (after `first`, in the same transaction); its answer is
        kept."""
        try:
            with self.conn.transaction():
                if bind:
                    self.conn.execute("SELECT * FROM ts_bind_key(%s)", [self.world.key_a])
                if first is not None:
                    self.conn.execute(*first)
                cur = self.conn.execute(statement, params)
                rows = cur.fetchall() if cur.description else []
                self.answers.append((statement, repr(rows)))
                return True
        except psycopg.Error:
            return False

    def leaked(self) -> list[str]:
        markers = self.world.markers()
        return [
            f"{statement}: {answer[:200]}"
            for statement, answer in self.answers
            if any(m in answer for m in markers)
        ]


def _relations(conn: psycopg.Connection[Any]) -> list[tuple[str, str, str]]:
    """(schema, name, kind) of every relation outside the system schemas, partitions included."""
    return conn.execute(
        """
        SELECT n.nspname::text, c.relname::text, c.relkind::text FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
          AND n.nspname NOT LIKE 'pg\\_temp\\_%%' AND n.nspname NOT LIKE 'pg\\_toast\\_temp\\_%%'
          AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
        ORDER BY 1, 2
        """
    ).fetchall()


def test_the_attack_has_b_in_every_store_and_would_see_a_leak(world: World) -> None:
    # The tests below can only fail if B is there to leak, and if reading B shows.
    counts = {table: row[0] for table, row in b_fingerprint(world) if table.startswith("ts_")}
    for table in (
        "ts_series",
        "ts_measure",
        "ts_measure_1m",
        "ts_measure_5m",
        "ts_measure_1h",
        "ts_measure_1m_z",
        "ts_invalidation",
    ):
        assert counts.get(table, 0) > 0, table
    with tenant_context(world.b) as cursor:
        cursor.execute("SELECT * FROM ts_measure_tenant")
        rows = repr(cursor.fetchall())
    assert any(marker in rows for marker in world.markers())


def test_the_web_role_logs_in_as_itself_and_cannot_escalate(
    attacker: psycopg.Connection[Any],
) -> None:
    assert web_role_problems() == []
    row = attacker.execute(
        "SELECT current_user::text, session_user::text, r.rolsuper FROM pg_roles r"
        " WHERE r.rolname = session_user"
    ).fetchone()
    assert row == (web_role(), web_role(), False)
    owner = connection.settings_dict["USER"] or "postgres"
    for statement in (
        f'SET ROLE "{owner}"',
        "SET ROLE postgres",
        f'SET SESSION AUTHORIZATION "{owner}"',
        f"SELECT set_config('role', '{owner}', false)",
        f"SELECT set_config('session_authorization', '{owner}', false)",
    ):
        with pytest.raises(psycopg.Error), attacker.transaction():
            attacker.execute(statement)
    # RESET ROLE leads back to the web role itself, which has app_user's rights and no more.
    with pytest.raises(psycopg.errors.InsufficientPrivilege), attacker.transaction():
        attacker.execute("SET ROLE app_user")
        attacker.execute("RESET ROLE")
        attacker.execute("SELECT count(*) FROM ts_measure")


def test_every_relation_but_the_tenant_views_is_closed_to_the_web_role(
    world: World, attacker: psycopg.Connection[Any]
) -> None:
    relations = _relations(attacker)
    assert len(relations) > 20  # partitions, compressed stores, Django's tables...
    privileges = ["SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"]
    granted = {
        (name, privilege)
        for schema, name, kind in relations
        for privilege in privileges
        if kind != "S"
        and one(
            attacker,
            "SELECT has_table_privilege(%s, %s, %s)",
            [web_role(), f'"{schema}"."{name}"', privilege],
        )[0]
    }
    assert granted == {(view, "SELECT") for view in TENANT_VIEWS}
    sequences = [name for _, name, kind in relations if kind == "S"]
    for name in sequences:
        assert not one(
            attacker,
            "SELECT has_sequence_privilege(%s, %s, 'USAGE')"
            " OR has_sequence_privilege(%s, %s, 'SELECT')",
            [web_role(), name, web_role(), name],
        )[0]

    attempt = Attempt(attacker, world)
    before = b_fingerprint(world)
    ran = []
    for schema, name, kind in relations:
        rel = sql.Identifier(schema, name).as_string(attacker)
        for statement in (
            f"SELECT * FROM {rel}",
            f"COPY {rel} TO STDOUT",
            f"COPY (SELECT * FROM {rel}) TO STDOUT",
            f"INSERT INTO {rel} DEFAULT VALUES",
            f"UPDATE {rel} SET {sql.Identifier('tenant_id').as_string(attacker)} = NULL",
            f"DELETE FROM {rel}",
            f"TRUNCATE {rel}",
            f"LOCK TABLE {rel}",
            f"SELECT * FROM {rel} FOR UPDATE",
        ):
            reads = statement.startswith(("SELECT * FROM", "COPY (SELECT")) and kind != "S"
            if attempt.run(statement) and not (reads and name in TENANT_VIEWS):
                ran.append(statement)
    assert ran == []
    assert attempt.leaked() == []
    assert b_fingerprint(world) == before


def test_the_tenant_views_show_a_only_whatever_the_attacker_sets(
    world: World, attacker: psycopg.Connection[Any]
) -> None:
    # A grant the owner minted for B on another connection, and A's own grant with B's tenant.
    with tenant_context(world.b) as cursor:
        cursor.execute("SELECT current_setting('traksense.tenant_grant')")
        (grant_b,) = cursor.fetchone()
    with attacker.transaction():
        attacker.execute("SELECT * FROM ts_bind_key(%s)", [world.key_a])
        (grant_a,) = one(attacker, "SELECT current_setting('traksense.tenant_grant')")
    forged = [
        grant_b,  # made on another backend
        str(world.b) + grant_a[36:],  # A's MAC under B's name
        grant_a.replace(str(world.a), str(world.b)),
        f"{world.b}:w:{'0' * 64}",
        f"{world.b}:w:{grant_a[-64:]}",
        f"{str(world.b).upper()}{grant_a[36:]}",
        f" {grant_b}",
        grant_b + "\n",
    ]
    settings = [("traksense.tenant_grant", value) for value in forged] + [
        ("app.tenant_id", str(world.b)),
        ("traksense.tenant_id", str(world.b)),
    ]
    attempt = Attempt(attacker, world)
    views = sorted(TENANT_VIEWS)
    for (name, value), bind, local in itertools.product(settings, (False, True), (True, False)):
        for view in views:
            setting = (f"SELECT set_config(%s, %s, {str(local).lower()})", [name, value])
            attempt.run(f"SELECT * FROM {view}", bind=bind, first=setting)
            attempt.run("SELECT ts_current_tenant(), ts_bound_tenant()", bind=bind, first=setting)
            attempt.run(f"SELECT * FROM {view}", bind=bind)  # after a session-level set
        attacker.execute("RESET ALL")
    # A grant of this very connection, replayed in a later transaction (session-level copy).
    with attacker.transaction():
        attacker.execute("SELECT * FROM ts_bind_key(%s)", [world.key_a])
        attacker.execute(
            "SELECT set_config('x.saved', current_setting('traksense.tenant_grant'), false)"
        )
    with attacker.transaction():
        row = attacker.execute(
            "SELECT set_config('traksense.tenant_grant', current_setting('x.saved'), true),"
            " ts_current_tenant()"
        ).fetchone()
    assert row is not None and row[1] is None
    for _, answer in attempt.answers:
        assert str(world.b) not in answer
    assert attempt.leaked() == []
    # The forged grants never even gave the attacker A back without A's key.
    with attacker.transaction():
        attacker.execute("SELECT set_config('traksense.tenant_grant', %s, true)", [grant_a])
        assert attacker.execute("SELECT ts_current_tenant()").fetchone() == (None,)
    attacker.execute("RESET ALL")


def test_a_read_only_key_never_writes_even_by_replaying_its_grant(
    world: World, attacker: psycopg.Connection[Any]
) -> None:
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction), attacker.transaction():
        attacker.execute("SELECT * FROM ts_bind_key(%s)", [world.key_a_read_only])
        attacker.execute(
            INGEST,
            [
                [str(uuid.uuid4())],
                [str(uuid.uuid4())],
                [dt.datetime.now(dt.UTC)],
                [1.0],
                None,
                None,
            ],
        )
    with attacker.transaction():
        attacker.execute("SAVEPOINT s")
        attacker.execute("SELECT * FROM ts_bind_key(%s)", [world.key_a_read_only])
        (grant,) = one(attacker, "SELECT current_setting('traksense.tenant_grant')")
        attacker.execute("ROLLBACK TO SAVEPOINT s")  # READ ONLY is rolled back with it
        row = attacker.execute(
            "SELECT set_config('traksense.tenant_grant', %s, true), ts_current_tenant(),"
            " current_setting('transaction_read_only')",
            [grant],
        ).fetchone()
    assert row is not None and row[1:] == (None, "off")


def _candidates(world: World, type_name: str) -> list[Any]:
    """Crafted arguments of one type: B's ids and names first, then edge cases."""
    b_ids = [str(world.b), world.b_device, world.b_point, world.b_text_point]
    now = dt.datetime.now(dt.UTC)
    table: dict[str, list[Any]] = {
        "bigint": [*world.b_series, 0, -1, 2**62],
        "integer": [1, 0, -1, 100000],
        "smallint": [1, 0],
        "uuid": b_ids,
        "text": [
            *b_ids,
            hash_key(world.key_b),
            "raw",
            "1m",
            "5m",
            "1h",
            "ts_measure",
            "'; SELECT 1; --",
        ],
        "boolean": [True, False],
        "timestamp with time zone": ["-infinity", "infinity", now - dt.timedelta(days=30)],
        "interval": ["1 day", "100 years"],
        "double precision": [SECRET_NUMBER, 0.0],
        "bigint[]": [world.b_series],
        "text[]": [[world.b_device], [world.b_point], [str(world.b)]],
        "timestamp with time zone[]": [[now - dt.timedelta(days=12)]],
        "double precision[]": [[1.0]],
        "boolean[]": [[True]],
    }
    return table.get(type_name, [None])


def test_every_security_definer_function_refuses_b_to_crafted_arguments(
    world: World, attacker: psycopg.Connection[Any]
) -> None:
    functions = attacker.execute(
        """
        SELECT p.oid::regprocedure::text, p.proname::text, p.prokind::text,
               ARRAY(SELECT format_type(t, NULL) FROM unnest(p.proargtypes) AS t)
        FROM pg_proc p
        WHERE p.prosecdef AND p.pronamespace NOT IN ('pg_catalog'::regnamespace,
                                                     'information_schema'::regnamespace)
        ORDER BY 1
        """
    ).fetchall()
    callable_ = [
        f
        for f in functions
        if one(attacker, "SELECT has_function_privilege(%s, %s, 'EXECUTE')", [web_role(), f[0]])[0]
    ]
    names = {f[1] for f in callable_}
    # The web role's doors: binding, admission, reading and writing its own tenant.
    assert {
        "ts_bind_key",
        "ts_admit_ingest",
        "ts_bound_tenant",
        "ts_ingest",
        "ts_read_raw",
    } <= names
    assert "ts_bind_tenant" not in names and "ts_create_partitions" not in names
    before = b_fingerprint(world)
    attempt = Attempt(attacker, world)
    for _signature, name, kind, arg_types in callable_:
        pools = [_candidates(world, t) for t in arg_types]
        width = max((len(p) for p in pools), default=1)
        for i in range(width):
            args = [pool[i % len(pool)] for pool in pools]
            placeholders = ", ".join(f"%s::{t}" for t in arg_types)
            call = f"public.{name}({placeholders})"
            statement = f"CALL {call}" if kind == "p" else f"SELECT x::text FROM {call} AS x"
            for bind in (True, False):
                attempt.run(statement, args, bind=bind)
    assert len(attempt.answers) > len(callable_)  # most calls ran and answered something
    assert attempt.leaked() == []
    assert b_fingerprint(world) == before


def test_server_files_large_objects_advisory_locks_and_other_sessions_are_out_of_reach(
    world: World, attacker: psycopg.Connection[Any]
) -> None:
    owner = psycopg.connect(**connection_params("default"))
    try:
        # The owner's session, idle in a transaction that named B: its query text stays hidden.
        owner.execute("SELECT %s::text, %s::text", [str(world.b), world.b_device])
        attempt = Attempt(attacker, world)
        attempt.run("SELECT query FROM pg_stat_activity WHERE query LIKE %s", [f"%{world.b}%"])
        rows = attacker.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE %s", [f"%{world.b}%"]
        ).fetchone()
        assert rows == (0,)
        refused = [
            "SELECT pg_read_file('PG_VERSION')",
            "SELECT pg_read_binary_file('PG_VERSION')",
            "SELECT pg_ls_dir('.')",
            "SELECT pg_stat_file('PG_VERSION')",
            "COPY (SELECT 1) TO '/tmp/traksense-attack'",
            "COPY (SELECT 1) TO PROGRAM 'true'",
            "SELECT lo_import('/etc/hostname')",
            "SELECT lo_from_bytea(0, 'x')",
            "SELECT lo_create(0)",
            "SELECT pg_advisory_lock(1)",
            "SELECT pg_try_advisory_xact_lock(hashtext('traksense.read.' || %s), 1)",
            "SELECT pg_advisory_xact_lock(hashtext('traksense.compress.1m'))",
            "SELECT pg_notify('x', 'y')",
            "CREATE TEMP TABLE loot (x text)",
            "CREATE TABLE public.loot (x text)",
            "CREATE SCHEMA loot",
            "CREATE FUNCTION pg_temp.ts_current_tenant() RETURNS uuid LANGUAGE sql"
            " AS 'SELECT NULL::uuid'",
            "CREATE OR REPLACE FUNCTION public.ts_current_tenant() RETURNS uuid LANGUAGE sql"
            " AS 'SELECT NULL::uuid'",
            "CREATE VIEW public.loot AS SELECT 1",
            "ALTER FUNCTION public.ts_bound_tenant() SECURITY INVOKER",
            "CREATE EXTENSION IF NOT EXISTS dblink",
            "SELECT * FROM pg_statistic",
            "SELECT * FROM pg_authid",
        ]
        ran = [
            statement
            for statement in refused
            if attempt.run(statement, [str(world.b)] if "%s" in statement else None)
        ]
        assert ran == []
        # Statistics of the tables (their most common values: B's) are hidden too.
        assert attacker.execute(
            "SELECT count(*) FROM pg_stats WHERE schemaname = 'public'"
        ).fetchone() == (0,)
        assert attempt.leaked() == []
    finally:
        owner.close()


def test_search_path_games_change_nothing(world: World, attacker: psycopg.Connection[Any]) -> None:
    attempt = Attempt(attacker, world)
    for path in ("pg_temp, public", "pg_temp", '"$user", pg_catalog', "nosuch, public"):
        attacker.execute(f"SET search_path = {path}")
        for view in sorted(TENANT_VIEWS):
            attempt.run(f"SELECT * FROM public.{view}")
        attempt.run("SELECT public.ts_current_tenant()")
        attempt.run(
            "SELECT * FROM public.ts_read_raw(%s, '-infinity', 'infinity', 1000)",
            [world.b_series[0]],
        )
    attacker.execute("RESET search_path")
    assert attempt.leaked() == []
    answers = [a for s, a in attempt.answers if "ts_current_tenant" in s]
    assert answers and all(str(world.a) in a for a in answers)


def test_a_statement_prepared_by_sql_makes_the_session_unbindable(
    world: World, attacker: psycopg.Connection[Any]
) -> None:
    # Re-created under the name of one of the application's prepared statements, it would run
    # in a later request's transaction with that request's key.
    attacker.execute("PREPARE trap (text) AS SELECT set_config('x.loot', $1, false)")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="PREPARE"):
        with attacker.transaction():
            attacker.execute("SELECT * FROM ts_bind_key(%s)", [world.key_a])
    attacker.execute("DEALLOCATE trap")
    with attacker.transaction():
        assert attacker.execute(
            "SELECT count(*) FROM ts_bind_key(%s)", [world.key_a]
        ).fetchone() == (1,)


def test_a_pooled_web_connection_forgets_the_tenant_at_commit(
    world: World, attacker: psycopg.Connection[Any]
) -> None:
    with attacker.transaction():
        attacker.execute("SELECT * FROM ts_bind_key(%s)", [world.key_a])
        assert attacker.execute("SELECT count(*) > 0 FROM ts_measure_tenant").fetchone() == (True,)
    row = attacker.execute(
        "SELECT ts_current_tenant(), (SELECT count(*) FROM ts_measure_tenant)"
    ).fetchone()
    assert row == (None, 0)
