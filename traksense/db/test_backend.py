"""The backend's health check of a reused connection: no round trip, yet a connection the server
closed is never handed to a request."""

from __future__ import annotations

import time

import psycopg
import pytest
from django.db import DEFAULT_DB_ALIAS, connection, connections


@pytest.mark.django_db
def test_a_connection_the_server_terminated_is_not_usable_and_is_replaced() -> None:
    other = connections.create_connection(DEFAULT_DB_ALIAS)
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            (pid,) = cursor.fetchone()
        assert other.is_usable()
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
        # The server's termination notice arrives asynchronously: wait for the event (bounded).
        deadline = time.monotonic() + 10
        while other.is_usable() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not other.is_usable()
        # What Django does around requests (CONN_HEALTH_CHECKS): the check fails, a new
        # connection opens.
        other.close_if_unusable_or_obsolete()
        other.ensure_connection()
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            assert cursor.fetchone()[0] != pid
    finally:
        other.close()


@pytest.mark.django_db
def test_an_idle_healthy_connection_is_usable_without_a_query() -> None:
    other = connections.create_connection(DEFAULT_DB_ALIAS)
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid(), 'the last query'")
            (pid, _) = cursor.fetchone()
        assert other.is_usable()
        with connection.cursor() as cursor:
            cursor.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", [pid])
            assert cursor.fetchone()[0] == "SELECT pg_backend_pid(), 'the last query'"
    finally:
        other.close()


@pytest.mark.django_db
def test_a_connection_in_an_aborted_transaction_is_not_usable() -> None:
    # As with Django's own check (a SELECT 1 would fail there).
    other = connections.create_connection(DEFAULT_DB_ALIAS)
    try:
        other.ensure_connection()
        raw = other.connection
        assert raw is not None
        raw.autocommit = False
        with pytest.raises(psycopg.errors.DivisionByZero):
            raw.execute("SELECT 1 / 0")
        assert not other.is_usable()
        raw.rollback()
        assert other.is_usable()
    finally:
        other.close()
