"""All read SQL of the points API.

Every statement reads the tenant views (`ts_*_tenant`) or the read functions (65_read.sql), which
check the transaction's tenant themselves, so the database filters by tenant whatever the caller
passes. Identifiers (column names, chosen from fixed tables below, never from input) are composed
with psycopg.sql; values are bind parameters.

Answers are rendered by PostgreSQL (json_agg / string_agg) and fetched as one text value per
page: no Python runs per row, which is what keeps 43,200 rows in tens of milliseconds. Django's
default cursor would parse every timestamptz with a Python loader; here a plain psycopg cursor on
the same connection (and transaction) fetches a handful of values.
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, cast

import psycopg
from django.conf import settings
from psycopg import pq, sql
from psycopg.abc import Buffer
from psycopg.adapt import Loader

from traksense.db.cursors import psycopg_cursor
from traksense.points import split
from traksense.points.resolution import bucket_count

# Bytes per streamed CSV chunk: big enough that chunking costs nothing, small enough to
# start sending early.
CSV_CHUNK_BYTES = 256 * 1024

RAW = "raw"
# By series shape (Series.shape): a counter is a numeric series whose rollups carry delta.
VALUE_COLUMN = {"numeric": "v_num", "counter": "v_num", "boolean": "v_bool", "text": "v_text"}
STATES = ("boolean", "text")
AGGREGATE_COLUMNS = ("v_avg", "v_min", "v_max", "n")


@dataclass(frozen=True)
class Calendar:
    """Calendar buckets: a date_trunc unit (day, week, month) in an IANA zone."""

    unit: str
    tz: str


@dataclass(frozen=True)
class Series:
    series_id: int
    kind: str
    counter: bool = False  # a numeric point marked as a counter: its rollups carry delta

    @property
    def shape(self) -> str:
        """What its rollup rows hold: numeric, counter (numeric + delta), boolean or text."""
        return "counter" if self.counter else self.kind


@dataclass(frozen=True)
class Page:
    """One page of an answer: its rendered rows, whether more rows follow, and the last ts."""

    # UTF-8, to be sent in order: JSON objects joined by commas (no brackets), or CSV lines (no
    # header); JSON in one part or, read in halves (split.py), three (the comma between them);
    # CSV in chunks for streaming.
    parts: Sequence[bytes]
    cut: bool
    last: datetime | None


# Series found per (tenant, device, point), kept by each process: a series' id and kind never
# change once created, so a request for a known series skips one round trip. Only what the
# tenant view answered for that tenant enters, never a miss (the series may be created later);
# and the read functions check the series' tenant in the database again whatever this holds.
# Its counter mark may change (`traksense point set`): an entry is trusted for
# SERIES_CACHE_SECONDS, so a new mark shows in every process's answers within that time.
_SERIES_CACHE: dict[tuple[uuid.UUID, uuid.UUID, uuid.UUID], tuple[Series, float]] = {}
SERIES_CACHE_SIZE = 10_000
SERIES_CACHE_SECONDS = 30.0


def _cached(key: tuple[uuid.UUID, uuid.UUID, uuid.UUID]) -> Series | None:
    entry = _SERIES_CACHE.get(key)
    if entry is None or entry[1] < time.monotonic():
        return None
    return entry[0]


def _cache(key: tuple[uuid.UUID, uuid.UUID, uuid.UUID], series: Series) -> Series:
    if len(_SERIES_CACHE) >= SERIES_CACHE_SIZE:
        _SERIES_CACHE.clear()
    _SERIES_CACHE[key] = (series, time.monotonic() + SERIES_CACHE_SECONDS)
    return series


def find_series(tenant_id: uuid.UUID, device_id: uuid.UUID, point_id: uuid.UUID) -> Series | None:
    """The current tenant's series for (device, point); None when unknown *or* another
    tenant's: the view cannot tell them apart, and neither does the API. `tenant_id` must be
    the tenant of the current transaction (it keys the cache)."""
    key = (tenant_id, device_id, point_id)
    found = _cached(key)
    if found is not None:
        return found
    with psycopg_cursor() as cur:
        cur.execute(
            "SELECT series_id, kind, counter FROM ts_series_tenant"
            " WHERE device_id = %s AND point_id = %s",
            [device_id, point_id],
            prepare=True,
        )
        row = cur.fetchone()
    if row is None:
        return None
    return _cache(key, Series(row[0], row[1], row[2]))


# Many series at once (POST /data/query): one statement for the ones the cache does not hold.
FIND_MANY_SQL = """
SELECT s.device_id, s.point_id, s.series_id, s.kind, s.counter
FROM unnest(%s::uuid[], %s::uuid[]) AS q(device_id, point_id)
JOIN ts_series_tenant s ON s.device_id = q.device_id AND s.point_id = q.point_id
"""


def find_many(
    tenant_id: uuid.UUID, pairs: Sequence[tuple[uuid.UUID, uuid.UUID]]
) -> dict[tuple[uuid.UUID, uuid.UUID], Series]:
    """find_series for many (device, point) pairs in at most one round trip: the current
    tenant's series by pair; a pair unknown or another tenant's is absent."""
    found: dict[tuple[uuid.UUID, uuid.UUID], Series] = {}
    missing: list[tuple[uuid.UUID, uuid.UUID]] = []
    for device, point in pairs:
        cached = _cached((tenant_id, device, point))
        if cached is not None:
            found[device, point] = cached
        else:
            missing.append((device, point))
    if not missing:
        return found
    with psycopg_cursor() as cur:
        cur.execute(FIND_MANY_SQL, [[d for d, _ in missing], [p for _, p in missing]], prepare=True)
        rows = cur.fetchall()
    for device, point, series_id, kind, counter in rows:
        found[device, point] = _cache((tenant_id, device, point), Series(series_id, kind, counter))
    return found


def calendar_zone(tz: str | None, start: datetime, end: datetime) -> tuple[str | None, int]:
    """The zone of a calendar read (`tz`, else the tenant's, else UTC; None when `tz` is not a
    zone PostgreSQL knows) and the widest tier width in seconds its midnights in [start, end)
    fall on (68_calendar.sql)."""
    with psycopg_cursor() as cur:
        cur.execute("SELECT tz, aligned FROM ts_calendar_zone(%s, %s, %s)", [tz, start, end])
        row = cur.fetchone()
    assert row is not None
    return row[0], row[1] or 0


def use_materialized_only() -> None:
    """Rollup views skip the on-the-fly tail for the rest of this transaction."""
    with psycopg_cursor() as cur:
        cur.execute("SELECT set_config('app.materialized_only', 'on', true)")


# -- the page statement ----------------------------------------------------------------------
# Rows come from ts_read_raw / ts_read_rollup_<tier> (65_read.sql): the series' range in time
# order, checked against the transaction's tenant once, without the per-row join and the sort
# the tenant views would cost. WITH ORDINALITY numbers the rows in the order the function
# returns them.


# The read function of each row shape (f"{prefix}_{tier}") and the columns it returns.
_RANGE_ARGS = "{series}, %(lo)s, %(end)s"
_CALENDAR_ARGS = "{series}, %(unit)s, %(tz)s, %(lo)s, %(end)s"
# The series argument of a page statement: one series, or each of a batch's (batch_json_sql).
ONE_SERIES = "%(series)s"
_ROLLUP_COLUMNS = "ts, v_avg, v_min, v_max, n"
_COUNTER_COLUMNS = "ts, v_avg, v_min, v_max, n, delta"
_STATE_COLUMNS = "ts, n, s_first, s_last, changes, time_in"


def _rows(
    tier: str,
    limit: str,
    calendar: bool = False,
    kind: str = "numeric",
    series: str = ONE_SERIES,
) -> sql.Composed:
    if tier == RAW:
        return sql.SQL(
            "ts_read_raw({series}, %(lo)s, %(end)s, {limit})"
            " WITH ORDINALITY AS p(ts, v_num, v_bool, v_text, i)"
        ).format(series=sql.SQL(series), limit=sql.SQL(limit))
    if calendar:
        # Calendar rows of a numeric point carry delta (NULL unless it is a counter).
        prefix, args, columns = (
            ("ts_read_calendar_state", _CALENDAR_ARGS, _STATE_COLUMNS)
            if kind in STATES
            else ("ts_read_calendar", _CALENDAR_ARGS, _COUNTER_COLUMNS)
        )
    elif kind in STATES:
        prefix, args, columns = "ts_read_state", _RANGE_ARGS, _STATE_COLUMNS
    elif kind == "counter":
        prefix, args, columns = "ts_read_counter", _RANGE_ARGS, _COUNTER_COLUMNS
    else:
        prefix, args, columns = "ts_read_rollup", _RANGE_ARGS, _ROLLUP_COLUMNS
    return sql.SQL("{read}({args}, {limit}) WITH ORDINALITY AS p({columns}, i)").format(
        read=sql.Identifier(f"{prefix}_{tier}"),
        args=sql.SQL(args.format(series=series)),
        limit=sql.SQL(limit),
        columns=sql.SQL(columns),
    )


def _value(kind: str) -> sql.Composable:
    return sql.SQL("p.{}").format(sql.Identifier(VALUE_COLUMN[kind]))


def page_rows_sql(tier: str, kind: str) -> sql.Composed:
    """The rows of one page, at most `limit`, in the order the read function returns them
    (time order): what every answer format renders. Parameters: see page_params."""
    if tier == RAW:
        values: sql.Composable = sql.SQL("{} AS v").format(_value(kind))
    elif kind in STATES:
        values = sql.SQL("p.n, p.s_first, p.s_last, p.changes, p.time_in")
    else:
        values = sql.SQL(", ").join(
            sql.SQL("p.{}").format(sql.Identifier(c)) for c in AGGREGATE_COLUMNS
        )
    rows = _rows(tier, "%(limit)s", kind=kind)
    return sql.SQL("SELECT p.ts, {values} FROM {rows}").format(values=values, rows=rows)


def _json_row(tier: str, kind: str) -> sql.Composable:
    # Concatenation: about 13% fewer instructions per row than format() with the same pieces,
    # and far fewer than json_build_object or row_to_json (bench/instructions.sh, docs/api.md).
    # No piece is ever NULL (rollup columns are NOT NULL; a raw sample holds its series' kind),
    # which || would turn into a missing row. Only the text value needs JSON escaping (to_json);
    # numbers print as JSON already, a boolean's ::text is true/false. to_json gives timestamptz
    # as RFC 3339 in the session time zone (UTC under Django).
    ts = sql.SQL("""'{"ts":' || to_json(p.ts)::text""")
    if tier != RAW and kind in STATES:
        # State rows (boolean, text: docs/api.md): first and last are null in an empty bucket
        # a hold reaches; json_build_object renders them (these rows are few).
        if kind == "boolean":
            rest = sql.SQL("'true_s', coalesce((p.time_in ->> 'true')::float8, 0)")
            first, last = sql.SQL("p.s_first::boolean"), sql.SQL("p.s_last::boolean")
        else:
            rest = sql.SQL("'time_in', p.time_in")
            first, last = sql.SQL("p.s_first"), sql.SQL("p.s_last")
        return sql.SQL(
            "json_build_object('ts', p.ts, 'first', {first}, 'last', {last},"
            " 'changes', p.changes, 'n', p.n, {rest})::text"
        ).format(first=first, last=last, rest=rest)
    if tier != RAW:
        # A counter's delta is NULL in a bucket whose increase is unknown (its samples expired
        # before the point was marked).
        delta = ""
        if kind == "counter":
            delta = """ || ',"delta":' || coalesce(p.delta::text, 'null')"""
        return sql.SQL(
            """{ts} || ',"v_avg":' || p.v_avg || ',"v_min":' || p.v_min"""
            """ || ',"v_max":' || p.v_max || ',"n":' || p.n""" + delta + """ || '}}'"""
        ).format(ts=ts)
    shape = {"text": "to_json({})::text", "boolean": "{}::text"}.get(kind, "{}")
    value = sql.SQL(shape).format(_value(kind))
    return sql.SQL("""{ts} || ',"v":' || {value} || '}}'""").format(ts=ts, value=value)


def _csv_line(tier: str, kind: str) -> sql.Composable:
    # The same timestamp text as the JSON answer (UTC: Django's session time zone), without its
    # quotes: ISO output with the separator swapped, 2,100 instructions a row against 3,700 for
    # trimming to_json's quotes (btrim is multibyte-aware; bench/instructions.sh).
    ts = sql.SQL("replace((p.ts AT TIME ZONE 'UTC')::text, ' ', 'T') || '+00:00'")
    if tier != RAW and kind in STATES:
        # ts,first,last,changes,n,true_s (boolean) or ...,time_in as quoted JSON (text).
        quoted = "'\"' || replace({}, '\"', '\"\"') || '\"'"
        first: sql.Composable
        last: sql.Composable
        rest: sql.Composable
        if kind == "boolean":
            first, last = sql.SQL("coalesce(p.s_first, '')"), sql.SQL("coalesce(p.s_last, '')")
            rest = sql.SQL("coalesce((p.time_in ->> 'true')::float8, 0)::text")
        else:
            first = sql.SQL("coalesce(" + quoted + ", '')").format(sql.SQL("p.s_first"))
            last = sql.SQL("coalesce(" + quoted + ", '')").format(sql.SQL("p.s_last"))
            rest = sql.SQL(quoted).format(sql.SQL("p.time_in::text"))
        return sql.SQL(
            "{ts} || ',' || {first} || ',' || {last} || ',' || p.changes || ',' || p.n"
            " || ',' || {rest} || E'\\n'"
        ).format(ts=ts, first=first, last=last, rest=rest)
    if tier != RAW:
        delta = " || ',' || coalesce(p.delta::text, '')" if kind == "counter" else ""
        return sql.SQL(
            "{ts} || ',' || p.v_avg || ',' || p.v_min || ',' || p.v_max || ',' || p.n"
            + delta
            + " || E'\\n'"
        ).format(ts=ts)
    if kind == "text":
        # RFC 4180: quote every text value, doubling inner quotes.
        return sql.SQL("{ts} || ',\"' || replace(p.v_text, '\"', '\"\"') || E'\"\\n'").format(ts=ts)
    return sql.SQL("{ts} || ',' || {value}::text || E'\\n'").format(ts=ts, value=_value(kind))


def _page_sql(
    tier: str,
    rendered: sql.Composable,
    calendar: bool = False,
    kind: str = "numeric",
    series: str = ONE_SERIES,
) -> sql.Composed:
    # One row: (the page's rows rendered and joined, NULL when none; the ts of its last row;
    # whether rows follow it). The function is asked for limit + 1 rows: the extra one only says
    # that more follow and is neither rendered nor counted in `last`.
    # string_agg without ORDER BY: a plain aggregate over the function scan, which feeds it the
    # rows in the order the function returned them (no join, no grouping, no parallelism). An
    # ORDER BY p.i inside the aggregate would cost PostgreSQL 15 a sort of the whole page
    # (PostgreSQL 16+ sees the input is presorted); the tests check the order on both.
    return sql.SQL(
        "SELECT {rendered} FILTER (WHERE p.i <= %(limit)s),"
        " max(p.ts) FILTER (WHERE p.i <= %(limit)s), count(*) > %(limit)s"
        " FROM {rows}"
    ).format(rendered=rendered, rows=_rows(tier, "%(limit)s + 1", calendar, kind, series))


@functools.cache
def page_json_sql(tier: str, kind: str, calendar: bool = False) -> sql.Composed:
    """A page as JSON objects joined by commas (see _page_sql); `calendar`: calendar buckets
    summed from `tier` (parameters unit and tz)."""
    rendered = sql.SQL("string_agg({row}, ',')").format(row=_json_row(tier, kind))
    return _page_sql(tier, rendered, calendar, kind)


@functools.cache
def page_csv_sql(tier: str, kind: str, calendar: bool = False) -> sql.Composed:
    """A page as CSV lines, each ending with a newline (see _page_sql)."""
    rendered = sql.SQL("string_agg({line}, '')").format(line=_csv_line(tier, kind))
    return _page_sql(tier, rendered, calendar, kind)


def page_params(
    series_id: int | list[int],
    lo: datetime,
    end: datetime,
    limit: int,
    calendar: Calendar | None = None,
) -> dict[str, object]:
    """Parameters of the page statements: series, lo (inclusive), end (exclusive), limit, and
    for calendar buckets their unit and zone."""
    params: dict[str, object] = {"series": series_id, "lo": lo, "end": end, "limit": limit}
    if calendar is not None:
        params["unit"] = calendar.unit
        params["tz"] = calendar.tz
    return params


class TextAsBytes(Loader):
    """text in binary format arrives as the client encoding's bytes (UTF-8 under Django): keep
    them as bytes. A rendered page goes to the socket as it came, never decoded to str and
    encoded back (two copies of a multi-megabyte value), nor converted to bytea by PostgreSQL
    (convert_to validates every byte again)."""

    format = pq.Format.BINARY

    def load(self, data: Buffer) -> bytes:
        return bytes(data)


def _fetch(
    statement: sql.Composed, cur: psycopg.Cursor[Any], params: dict[str, object]
) -> tuple[bytes, datetime | None, bool]:
    cur.adapters.register_loader("text", TextAsBytes)
    cur.execute(statement, params, prepare=True, binary=True)
    row = cur.fetchone()
    assert row is not None
    return row[0] or b"", row[1], bool(row[2])


def _in_halves(
    tier: str, kind: str, lo: datetime, end: datetime, limit: int, calendar: Calendar | None
) -> bool:
    """Whether to read the page in two halves at once (split.py): a numeric rollup range that
    cannot hold more rows than `limit` (one per bucket at most), and enough of them to be worth
    it. Never calendar buckets (halves cut at an instant would split a local day), nor state
    rows (each half would miss the holds reaching into it from the other)."""
    if tier == RAW or kind != "numeric" or calendar is not None or settings.READ_SPLIT_BUCKETS <= 0:
        return False
    buckets = bucket_count(tier, lo, end)
    return settings.READ_SPLIT_BUCKETS <= buckets <= limit


def _read(
    statement: sql.Composed,
    tier: str,
    series: Series,
    lo: datetime,
    end: datetime,
    limit: int,
    separator: bytes,
    calendar: Calendar | None,
) -> Page:
    params = page_params(series.series_id, lo, end, limit, calendar)
    fetch = functools.partial(_fetch, statement)
    if _in_halves(tier, series.shape, lo, end, limit, calendar):
        mid = lo + (end - lo) / 2
        halves = split.read_in_halves(fetch, {**params, "end": mid}, {**params, "lo": mid})
        if halves is not None:
            (first, first_last, first_cut), (second, last, cut) = halves
            assert not first_cut  # the whole range holds at most `limit` rows
            parts = [first, separator, second] if first and second else [first or second]
            return Page(parts=parts, cut=cut, last=last or first_last)
    with psycopg_cursor() as cur:
        body, last, cut = fetch(cur, params)
    return Page(parts=[body], cut=cut, last=last)


def read_json_page(
    tier: str,
    series: Series,
    lo: datetime,
    end: datetime,
    limit: int,
    calendar: Calendar | None = None,
) -> Page:
    """Rows of `series` from `tier` with lo <= ts < end, at most `limit`, as JSON objects
    joined by commas (the caller adds the brackets); with `calendar`, the calendar buckets
    summed from `tier` that start in [lo, end)."""
    statement = page_json_sql(tier, series.shape, calendar is not None)
    return _read(statement, tier, series, lo, end, limit, b",", calendar)


# -- many series over one window (POST /data/query) -----------------------------------------


@functools.cache
def batch_json_sql(tier: str, kind: str, calendar: bool = False) -> sql.Composed:
    """page_json_sql for every series of the array %(series)s in one statement: one row per
    series, (its 1-based place k in the array, then page_json_sql's three columns). Each series
    is its own page, read by the same function call and aggregated by the same plain aggregate
    (the LATERAL subquery is page_json_sql with the series' id), so an element equals what GET
    /data/points answers for it; only the statement's round trip, parse and Python around it
    are shared."""
    rendered = sql.SQL("string_agg({row}, ',')").format(row=_json_row(tier, kind))
    page = _page_sql(tier, rendered, calendar, kind, series="s.id")
    return sql.SQL(
        "SELECT s.k, a.* FROM unnest(%(series)s::bigint[]) WITH ORDINALITY AS s(id, k)"
        " CROSS JOIN LATERAL ({page}) a"
    ).format(page=page)


# A batch whose pages hold at least this many rows (at most: buckets in the window, or the
# limit) is read on two connections at once, half its series each (split.py): below it, the
# helper's round trips (snapshot export, bind, settings: ~0.5 ms) cost more than half the
# reading saves. Each series counts BATCH_SERIES_ROWS besides its rows: a read function's call
# costs about as much as rendering that many rows. Measured with `python -m bench dashboard`.
BATCH_SPLIT_ROWS = 2_000
BATCH_SERIES_ROWS = 20


Job = tuple[sql.Composed, dict[str, object]]
BatchRow = tuple[int, bytes, datetime | None, bool]


def _batch_fetch(cur: psycopg.Cursor[Any], params: dict[str, object]) -> list[list[BatchRow]]:
    """Run each (statement, parameters) of params["jobs"]; per job its rows (k, page, last,
    cut)."""
    jobs = cast(list[Job], params["jobs"])
    cur.adapters.register_loader("text", TextAsBytes)
    answers = []
    for statement, job in jobs:
        cur.execute(statement, job, prepare=True, binary=True)
        answers.append([(k, body or b"", last, bool(cut)) for k, body, last, cut in cur.fetchall()])
    return answers


def read_json_pages(
    tier: str,
    series: Sequence[Series],
    lo: datetime,
    end: datetime,
    limit: int,
    calendar: Calendar | None = None,
) -> list[Page]:
    """read_json_page for each of `series` over the same window, in order: one statement per
    row shape for all of them; when the pages are big enough (BATCH_SPLIT_ROWS), half the series
    read on the request's connection and half on the read helper at once, in one snapshot
    (split.py), since PostgreSQL renders a statement on one core."""
    if len(series) == 1:  # one page: GET's reader, which may read it in halves of its range
        return [read_json_page(tier, series[0], lo, end, limit, calendar)]
    by_shape: dict[str, list[int]] = {}
    for i, one in enumerate(series):
        by_shape.setdefault(one.shape, []).append(i)
    rows = limit if tier == RAW else min(bucket_count(tier, lo, end), limit)
    split_up = len(series) * (rows + BATCH_SERIES_ROWS) >= BATCH_SPLIT_ROWS
    # Per half (the request's connection, the helper's): its jobs, and each job's series (the
    # places in `series` of its array's elements).
    jobs: tuple[list[Job], list[Job]] = ([], [])
    members: tuple[list[list[int]], list[list[int]]] = ([], [])
    for shape, places in by_shape.items():
        statement = batch_json_sql(tier, shape, calendar is not None)
        cut = len(places) // 2 if split_up else len(places)
        # The larger part of an odd split goes to the half with fewer series so far.
        if split_up and sum(map(len, members[0])) <= sum(map(len, members[1])):
            cut = len(places) - cut
        for half, chosen in ((0, places[:cut]), (1, places[cut:])):
            if chosen:
                ids = [series[i].series_id for i in chosen]
                jobs[half].append((statement, page_params(ids, lo, end, limit, calendar)))
                members[half].append(chosen)
    answers: tuple[list[list[BatchRow]], list[list[BatchRow]]] | None = None
    if jobs[1]:
        answers = split.read_in_halves(_batch_fetch, {"jobs": jobs[0]}, {"jobs": jobs[1]})
    if answers is None:
        with psycopg_cursor() as cur:
            answers = (_batch_fetch(cur, {"jobs": jobs[0]}), _batch_fetch(cur, {"jobs": jobs[1]}))
    pages: list[Page | None] = [None] * len(series)
    for half in (0, 1):
        for job_rows, chosen in zip(answers[half], members[half], strict=True):
            for k, body, last, cut_ in job_rows:
                pages[chosen[k - 1]] = Page(parts=[body], cut=cut_, last=last)
    missing = [series[i].series_id for i, page in enumerate(pages) if page is None]
    if missing:
        raise RuntimeError(f"the batch statement answered no page for series {missing}")
    return cast(list[Page], pages)


def read_csv_page(
    tier: str,
    series: Series,
    lo: datetime,
    end: datetime,
    limit: int,
    calendar: Calendar | None = None,
) -> Page:
    """Like read_json_page, as CSV lines (no header), in chunks for streaming."""
    statement = page_csv_sql(tier, series.shape, calendar is not None)
    page = _read(statement, tier, series, lo, end, limit, b"", calendar)
    chunks = [
        bytes(memoryview(part)[i : i + CSV_CHUNK_BYTES])
        for part in page.parts
        for i in range(0, len(part), CSV_CHUNK_BYTES)
    ]
    return Page(parts=chunks, cut=page.cut, last=page.last)


# -- the catalog -----------------------------------------------------------------------------

# A page of the catalog, keyset-paged on (device_id, point_id) through the identity index of
# ts_series (66_catalog.sql): the first page costs the same with a million series. One row past
# the page says whether there is a next one. First and last sample per series:
# ts_raw_span() (65_read.sql) probes the primary keys, whatever the series' length.
SERIES_SQL = """
SELECT coalesce(json_agg(json_build_object(
           'device_id', p.device_id,
           'point_id', p.point_id,
           'kind', p.kind,
           'first', p.first_ts,
           'last', p.last_ts)
         ORDER BY p.device_id, p.point_id) FILTER (WHERE p.n <= %(limit)s), '[]')::text,
       count(*) > %(limit)s,
       max(p.device_id::text || '/' || p.point_id::text) FILTER (WHERE p.n = %(limit)s)
FROM ts_series_catalog(%(device)s, %(kind)s, %(after_device)s, %(after_point)s, %(limit)s + 1)
     WITH ORDINALITY AS p(series_id, device_id, point_id, kind, first_ts, last_ts, n)
"""

# One page of the tenant's devices: each with its number of points and its newest sample.
DEVICES_SQL = """
SELECT coalesce(json_agg(json_build_object(
           'device_id', d.device_id, 'points', d.points, 'last', d.last)
         ORDER BY d.device_id) FILTER (WHERE d.n <= %(limit)s), '[]')::text,
       count(*) > %(limit)s,
       max(d.device_id::text) FILTER (WHERE d.n = %(limit)s)
FROM (SELECT p.*, row_number() OVER (ORDER BY p.device_id) AS n
      FROM ts_device_page(%(after_device)s, %(limit)s + 1) AS p) d
"""


class CatalogPage(NamedTuple):
    """A page of the catalog as JSON array text, and the key after which the next page starts
    (None on the last page)."""

    body: str
    after: str | None


def list_series(
    device_id: uuid.UUID | None,
    kind: str | None = None,
    after: tuple[uuid.UUID, uuid.UUID] | None = None,
    limit: int = 1000,
) -> CatalogPage:
    """A page of the current tenant's series, ordered by device and point, optionally of one
    device and one kind, starting after the (device, point) key `after`."""
    with psycopg_cursor() as cur:
        cur.execute(
            SERIES_SQL,
            {
                "device": device_id,
                "kind": kind,
                "after_device": after[0] if after else None,
                "after_point": after[1] if after else None,
                "limit": limit,
            },
        )
        row = cur.fetchone()
    assert row is not None
    return CatalogPage(row[0], row[2] if row[1] else None)


def list_devices(after: uuid.UUID | None = None, limit: int = 1000) -> CatalogPage:
    """A page of the current tenant's devices, ordered by id, starting after `after`."""
    with psycopg_cursor() as cur:
        cur.execute(DEVICES_SQL, {"after_device": after, "limit": limit})
        row = cur.fetchone()
    assert row is not None
    return CatalogPage(row[0], row[2] if row[1] else None)
