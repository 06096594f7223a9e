"""docs/operations.md's SQL for a server where migrate may not create roles, run as written.

A fresh database and an owner without SUPERUSER, CREATEROLE or CREATEDB; the DBA's block from
the docs (names replaced by this test's); then `traksense migrate` as that owner, with
DATABASE_WEB_URL naming the role the block made. Migrate checks the web role and fails when it
could escalate, which the second test shows with a role the DBA made with CREATEDB.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from django.db import connection
from psycopg import sql
from psycopg.conninfo import make_conninfo

DOCS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
SECTION = "### The web role, when migrate may not create it"


def documented_block() -> str:
    text = DOCS.read_text()
    section = text[text.index(SECTION) :]
    match = re.search(r"```sql\n(.*?)```", section, re.S)
    assert match is not None, "the section has no SQL block"
    return match.group(1)


@dataclass
class Server:
    owner: str
    web: str
    database: str
    password: str

    def url(self, user: str, superuser: bool = False) -> str:
        info = connection.connection.info
        return make_conninfo(
            "",
            host=info.host,
            port=str(info.port),
            dbname=self.database,
            user=info.user if superuser else user,
            password=None if superuser else self.password,
        )


@pytest.fixture
def fresh(db: None) -> Iterator[Server]:
    """A database owned by a role with none of the rights migrate would use to set itself up."""
    tag = secrets.token_hex(4)
    server = Server(f"ts_op_{tag}", f"ts_op_web_{tag}", f"ts_op_{tag}", secrets.token_hex(16))
    connection.ensure_connection()
    admin_info = connection.connection.info
    admin = psycopg.connect(
        make_conninfo(
            "",
            host=admin_info.host,
            port=str(admin_info.port),
            dbname="postgres",
            user=admin_info.user,
        ),
        autocommit=True,
    )
    admin.execute(
        sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB PASSWORD {}").format(
            sql.Identifier(server.owner), sql.Literal(server.password)
        )
    )
    admin.execute(
        sql.SQL("CREATE DATABASE {} OWNER {}").format(
            sql.Identifier(server.database), sql.Identifier(server.owner)
        )
    )
    try:
        yield server
    finally:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(server.database)
            )
        )
        for role in (server.web, server.owner):
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
        admin.close()


def run_dba_block(server: Server, block: str) -> None:
    """The block with this test's names, as the test's superuser on the fresh database."""
    named = (
        block.replace("traksense_web", server.web)
        .replace("'a-long-random-password'", f"'{server.password}'")
        .replace("DATABASE traksense", f"DATABASE {server.database}")
        .replace("TO traksense", f"TO {server.owner}")
    )
    with psycopg.connect(server.url("", superuser=True), autocommit=True) as dba:
        exists = dba.execute("SELECT 1 FROM pg_roles WHERE rolname = 'app_user'").fetchone()
        if exists:  # one per server, shared by every database: this one already has it
            named = named.replace("CREATE ROLE app_user NOLOGIN;", "")
        dba.execute(named.encode())


def migrate(server: Server, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("TRAKSENSE_TEST_DB", None)
    env.update(
        DATABASE_URL=server.url(server.owner),
        DATABASE_WEB_URL=server.url(server.web),
        TRAKSENSE_HOME=str(tmp_path),
    )
    return subprocess.run(
        [sys.executable, "-m", "traksense", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_the_documented_dba_block_lets_a_plain_owner_migrate_with_a_safe_web_role(
    fresh: Server, tmp_path: Path
) -> None:
    run_dba_block(fresh, documented_block())
    done = migrate(fresh, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    with psycopg.connect(fresh.url(fresh.web), autocommit=True) as web:
        # Logged in as itself, member of app_user only, creating nothing.
        row = web.execute(
            "SELECT current_user, pg_has_role(current_user, 'app_user', 'MEMBER'),"
            " has_database_privilege(current_database(), 'TEMPORARY'),"
            " has_schema_privilege('public', 'CREATE'),"
            " has_function_privilege('pg_advisory_lock(bigint)', 'EXECUTE')"
        ).fetchone()
        assert row == (fresh.web, True, False, False, False)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            web.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(fresh.owner)))


def test_migrate_refuses_a_web_role_the_dba_made_too_powerful(
    fresh: Server, tmp_path: Path
) -> None:
    block = documented_block()
    assert "NOCREATEDB NOCREATEROLE" in block
    run_dba_block(fresh, block.replace("NOCREATEDB NOCREATEROLE", "CREATEDB NOCREATEROLE"))
    done = migrate(fresh, tmp_path)
    assert done.returncode != 0
    assert "may create databases" in done.stderr
