"""The API's own login role (settings.WEB_ROLE, `traksense_web`): created and checked by migrate.

The role logs in, inherits app_user's rights and nothing else: no superuser, no CREATEROLE or
CREATEDB, no membership in the owner, no CREATE or TEMPORARY anywhere (15_tenant_binding.sql
revokes those from PUBLIC). So `RESET ROLE` or `SET ROLE` from its connection reach nothing
beyond app_user. docs/operations.md shows the statements for an operator whose migrating role
may not create roles (then DATABASE_WEB_URL names the role they made).
"""

from __future__ import annotations

import logging
import os
import secrets

from django.conf import settings
from django.db import connections
from psycopg import sql

from traksense.configerror import ConfigError
from traksense.db.context import RUNTIME_ROLE

log = logging.getLogger(__name__)

# Everything the role must not have (pg_roles columns).
_ATTRIBUTES = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT"


def web_role() -> str:
    """The web connection's login role."""
    return str(connections["web"].settings_dict["USER"] or settings.WEB_ROLE)


def ensure_web_role(using: str = "default") -> None:
    """Create or update the web role when migrate may (DATABASE_WEB_URL unset), grant it
    app_user and CONNECT, then check it cannot escalate: ConfigError otherwise."""
    role = web_role()
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT r.rolsuper OR r.rolcreaterole, current_user::text,"
            " EXISTS (SELECT FROM pg_roles w WHERE w.rolname = %s)"
            " FROM pg_roles r WHERE r.rolname = current_user",
            [role],
        )
        row = cursor.fetchone()
        assert row is not None
        may_create, owner, exists = row
        ident = sql.Identifier(role)
        if not settings.DATABASE_WEB_URL and may_create:
            password = _password()
            verb = "ALTER" if exists else "CREATE"
            cursor.execute(
                sql.SQL("{} ROLE {} " + _ATTRIBUTES + " PASSWORD {}")
                .format(sql.SQL(verb), ident, sql.Literal(password))
                .as_string(None)
            )
            exists = True
        if not exists:
            log.warning(
                "the web role %s does not exist and %s may not create it: see docs/operations.md"
                " (the API cannot connect until it exists)",
                role,
                owner,
            )
            return
        cursor.execute("SELECT pg_has_role(%s, %s, 'MEMBER')", [role, RUNTIME_ROLE])
        member = cursor.fetchone()
        if member is not None and not member[0]:
            cursor.execute(
                sql.SQL("GRANT {} TO {}")
                .format(sql.Identifier(RUNTIME_ROLE), ident)
                .as_string(None)
            )
        cursor.execute(
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {}")
            .format(sql.Identifier(connections[using].settings_dict["NAME"]), ident)
            .as_string(None)
        )
    problems = web_role_problems(using)
    if problems:
        raise ConfigError(f"the web role {role} is unsafe: {'; '.join(problems)}")


def web_role_problems(using: str = "default") -> list[str]:
    """What lets the web role do more than app_user may (empty: nothing)."""
    role = web_role()
    with connections[using].cursor() as cursor:
        cursor.execute(
            """
            SELECT r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolreplication, r.rolbypassrls,
                   pg_has_role(r.oid, current_user, 'USAGE') AND r.rolname <> current_user,
                   ARRAY(SELECT g.rolname::text FROM pg_roles g
                         WHERE pg_has_role(r.oid, g.oid, 'MEMBER')
                           AND g.oid <> r.oid AND g.rolname <> %s),
                   has_database_privilege(r.oid, current_database(), 'CREATE'),
                   has_database_privilege(r.oid, current_database(), 'TEMPORARY'),
                   ARRAY(SELECT n.nspname::text FROM pg_namespace n
                         WHERE has_schema_privilege(r.oid, n.oid, 'CREATE'))
            FROM pg_roles r WHERE r.rolname = %s
            """,
            [RUNTIME_ROLE, role],
        )
        row = cursor.fetchone()
    if row is None:
        return [f"role {role} does not exist"]
    (
        superuser,
        createrole,
        createdb,
        replication,
        bypassrls,
        owner,
        others,
        db_create,
        temp,
        schemas,
    ) = row
    problems = [
        what
        for flag, what in [
            (superuser, "it is a superuser"),
            (createrole, "it may create roles"),
            (createdb, "it may create databases"),
            (replication, "it may replicate"),
            (bypassrls, "it bypasses row-level security"),
            (owner, "it is a member of the owner"),
            (db_create, "it may create schemas in the database"),
            (temp, "it may create temporary tables"),
        ]
        if flag
    ]
    if others:
        problems.append(f"it is a member of {', '.join(others)}")
    if schemas:
        problems.append(f"it may create objects in schema {', '.join(schemas)}")
    return problems


def _password() -> str:
    """The web role's password, generated on first use and kept in WEB_PASSWORD_FILE (0600),
    where every process started with this TRAKSENSE_HOME reads it (settings.py)."""
    path = settings.WEB_PASSWORD_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another migrate, just now
        return path.read_text().strip()
    with os.fdopen(fd, "w") as out:
        out.write(password + "\n")
    # This process's settings were read before the file existed.
    connections["web"].settings_dict["PASSWORD"] = password
    return password
