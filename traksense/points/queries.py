"""All read SQL of the points API.

Every statement reads the tenant views (`ts_*_tenant`) only, so the database filters by the
transaction's tenant whatever the caller passes. Identifiers (view and column names, chosen from
fixed tables below, never from input) are composed with psycopg.sql; values are bind parameters.

Answers are rendered by PostgreSQL (json_agg / string_agg) and fetched as one text value per
page: no Python runs per row, which is what keeps 43,200 rows in tens of milliseconds. Django's
default cursor would parse every timestamptz with a Python loader; here a plain psycopg cursor on
the same connection (and transaction) fetches a handful of values.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from django.db import connection
from psycopg import sql

# Rows per CSV chunk: big enough that chunking costs nothing, small enough to stream.
CSV_CHUNK_ROWS = 5_000

RAW = "raw"
VIEWS = {
    "raw": "ts_measure_tenant",
    "1m": "ts_measure_1m_tenant",
    "5m": "ts_measure_5m_tenant",
    "1h": "ts_measure_1h_tenant",
}
VALUE_COLUMN = {"numeric": "v_num", "boolean": "v_bool", "text": "v_text"}
AGGREGATE_COLUMNS = ("v_avg", "v_min", "v_max", "n")


@dataclass(frozen=True)
class Series:
    series_id: int
    kind: str


@dataclass(frozen=True)
class Page:
    """One page of an answer: its rendered rows, whether more rows follow, and the last ts."""

    body: str  # JSON array text, or CSV lines without header
    chunks: Sequence[str]  # CSV only: body split for streaming
    cut: bool
    last: datetime | None


def _cursor() -> psycopg.Cursor[Any]:
    """A psycopg cursor on Django's connection, inside the current transaction."""
    connection.ensure_connection()
    raw = connection.connection
    assert raw is not None
    return psycopg.Cursor(raw)


def find_series(device_id: uuid.UUID, point_id: uuid.UUID) -> Series | None:
    """The current tenant's series for (device, point); None when unknown *or* another
    tenant's: the view cannot tell them apart, and neither does the API."""
    with _cursor() as cur:
        cur.execute(
            "SELECT series_id, kind FROM ts_series_tenant WHERE device_id = %s AND point_id = %s",
            [device_id, point_id],
            prepare=True,
        )
        row = cur.fetchone()
    return Series(row[0], row[1]) if row else None


def use_materialized_only() -> None:
    """Rollup views skip the on-the-fly tail for the rest of this transaction."""
    with _cursor() as cur:
        cur.execute("SELECT set_config('app.materialized_only', 'on', true)")


# -- the page statement ----------------------------------------------------------------------


def _time_column(tier: str) -> sql.Identifier:
    return sql.Identifier("ts" if tier == RAW else "bucket")


def page_rows_sql(tier: str, kind: str) -> sql.Composed:
    """The rows of one page, in order, `limit + 1` of them: the plain SELECT every answer
    format wraps. Parameters: series, lo (inclusive), end (exclusive), limit_plus_one."""
    time_col = _time_column(tier)
    if tier == RAW:
        values = sql.SQL("m.{} AS v").format(sql.Identifier(VALUE_COLUMN[kind]))
    else:
        values = sql.SQL(", ").join(
            sql.SQL("m.{}").format(sql.Identifier(c)) for c in AGGREGATE_COLUMNS
        )
    return sql.SQL(
        "SELECT m.{t} AS ts, {values} FROM {view} AS m"
        " WHERE m.series_id = %(series)s AND m.{t} >= %(lo)s AND m.{t} < %(end)s"
        " ORDER BY m.{t} LIMIT %(limit_plus_one)s"
    ).format(t=time_col, values=values, view=sql.Identifier(VIEWS[tier]))


def _json_row(tier: str, kind: str) -> sql.Composable:
    # Text concatenation renders about twice as fast as json_build_object + json_agg. Only the
    # text value needs JSON escaping (to_json); numbers and booleans print as JSON already.
    # to_json gives timestamptz as RFC 3339 in the session time zone (UTC under Django).
    if tier != RAW:
        return sql.SQL(
            """'{"ts":' || to_json(p.ts) || ',"v_avg":' || p.v_avg || ',"v_min":' || p.v_min"""
            """ || ',"v_max":' || p.v_max || ',"n":' || p.n || '}'"""
        )
    value = sql.SQL("to_json(p.v)::text" if kind == "text" else "p.v::text")
    return sql.SQL("""'{{"ts":' || to_json(p.ts) || ',"v":' || {value} || '}}'""").format(
        value=value
    )


def _csv_line(tier: str, kind: str) -> sql.Composable:
    # The same timestamp text as the JSON answer, without its quotes.
    ts = sql.SQL("btrim(to_json(p.ts)::text, '\"')")
    if tier != RAW:
        return sql.SQL(
            "{ts} || ',' || p.v_avg || ',' || p.v_min || ',' || p.v_max || ',' || p.n || E'\\n'"
        ).format(ts=ts)
    if kind == "text":
        # RFC 4180: quote every text value, doubling inner quotes.
        return sql.SQL("{ts} || ',\"' || replace(p.v, '\"', '\"\"') || E'\"\\n'").format(ts=ts)
    return sql.SQL("{ts} || ',' || p.v::text || E'\\n'").format(ts=ts)


def page_json_sql(tier: str, kind: str) -> sql.Composed:
    """One row: (the page's rows as JSON objects joined by commas, or NULL when there are none;
    whether more rows follow; ts of the page's last row)."""
    return sql.SQL(
        "SELECT string_agg({row}, ',' ORDER BY p.ts) FILTER (WHERE p.rn <= %(limit)s),"
        " count(*) > %(limit)s,"
        " max(p.ts) FILTER (WHERE p.rn <= %(limit)s)"
        " FROM (SELECT q.*, row_number() OVER (ORDER BY q.ts) AS rn FROM ({rows}) AS q) AS p"
    ).format(row=_json_row(tier, kind), rows=page_rows_sql(tier, kind))


def page_csv_sql(tier: str, kind: str) -> sql.Composed:
    """Row 0: (NULL, more rows follow, ts of the last row); rows 1..: CSV chunks in order."""
    return sql.SQL(
        "WITH p AS MATERIALIZED ("
        " SELECT q.*, row_number() OVER (ORDER BY q.ts) AS rn FROM ({rows}) AS q)"
        " SELECT 0 AS k, NULL::text, count(*) > %(limit)s,"
        "  max(p.ts) FILTER (WHERE p.rn <= %(limit)s) FROM p"
        " UNION ALL"
        " SELECT 1 + (p.rn - 1) / %(chunk)s, string_agg({line}, '' ORDER BY p.ts), NULL, NULL"
        "  FROM p WHERE p.rn <= %(limit)s GROUP BY 1"
        " ORDER BY 1"
    ).format(rows=page_rows_sql(tier, kind), line=_csv_line(tier, kind))


def page_params(series_id: int, lo: datetime, end: datetime, limit: int) -> dict[str, object]:
    return {
        "series": series_id,
        "lo": lo,
        "end": end,
        "limit": limit,
        "limit_plus_one": limit + 1,
        "chunk": CSV_CHUNK_ROWS,
    }


def read_json_page(tier: str, series: Series, lo: datetime, end: datetime, limit: int) -> Page:
    """Rows of `series` from `tier` with lo <= ts < end, at most `limit`, as a JSON array."""
    with _cursor() as cur:
        cur.execute(
            page_json_sql(tier, series.kind),
            page_params(series.series_id, lo, end, limit),
            prepare=True,
        )
        row = cur.fetchone()
    assert row is not None
    return Page(body=f"[{row[0] or ''}]", chunks=(), cut=bool(row[1]), last=row[2])


def read_csv_page(tier: str, series: Series, lo: datetime, end: datetime, limit: int) -> Page:
    """Like read_json_page, as CSV lines (no header) in chunks of CSV_CHUNK_ROWS rows."""
    with _cursor() as cur:
        cur.execute(
            page_csv_sql(tier, series.kind),
            page_params(series.series_id, lo, end, limit),
            prepare=True,
        )
        rows = cur.fetchall()
    meta, chunks = rows[0], [r[1] for r in rows[1:]]
    return Page(body="".join(chunks), chunks=chunks, cut=bool(meta[2]), last=meta[3])


# -- the catalog -----------------------------------------------------------------------------

# First and last sample per series: two LIMIT 1 probes on ts_measure's (series_id, ts) primary
# key each, whatever the series' length.
SERIES_SQL = """
SELECT coalesce(json_agg(json_build_object(
           'device_id', s.device_id,
           'point_id', s.point_id,
           'kind', s.kind,
           'first_ts', (SELECT m.ts FROM ts_measure_tenant m
                        WHERE m.series_id = s.series_id ORDER BY m.ts LIMIT 1),
           'last_ts', (SELECT m.ts FROM ts_measure_tenant m
                       WHERE m.series_id = s.series_id ORDER BY m.ts DESC LIMIT 1))
         ORDER BY s.device_id, s.point_id), '[]')::text
FROM ts_series_tenant s
WHERE (%(device)s::uuid IS NULL OR s.device_id = %(device)s::uuid)
"""


def list_series(device_id: uuid.UUID | None) -> str:
    """The current tenant's series as a JSON array text, optionally of one device."""
    with _cursor() as cur:
        cur.execute(SERIES_SQL, {"device": device_id})
        row = cur.fetchone()
    assert row is not None
    text: str = row[0]
    return text
