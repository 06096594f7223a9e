"""GET /data/points, POST /data/query, GET /data/series and /data/devices: parse -> plan -> read.

Both run inside tenant_reader, hence inside tenant_context: one REPEATABLE READ, READ ONLY
transaction as app_user for the key's tenant. Every page is read and rendered inside that
transaction (large pages with the help of a second connection sharing its snapshot: split.py);
the response only carries text PostgreSQL already produced.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import cast
from urllib.parse import urlencode

import orjson
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from traksense.core.errors import ApiError, bad_request, error_response
from traksense.core.jsonio import SplicedJsonResponse, raw_json_response
from traksense.points import queries
from traksense.points.batch import BatchQuery, parse_batch_query
from traksense.points.resolution import (
    CALENDAR,
    Cursor,
    Plan,
    PointsQuery,
    calendar_plan,
    decode_cursor,
    encode_cursor,
    isoformat,
    parse_query,
    parse_uuid,
    plan,
)
from traksense.tenancy.auth import tenant_reader

ONE_MICROSECOND = timedelta(microseconds=1)
POINTS_PATH = "/data/points"


def _params(request: HttpRequest) -> dict[str, list[str]]:
    return {name: request.GET.getlist(name) for name in request.GET}


def _not_found(query: PointsQuery) -> ApiError:
    # The same answer for a series that does not exist and one of another tenant.
    return ApiError(
        404,
        "not_found",
        f"no series for device_id {query.device_id} and point_id {query.point_id}",
        series=(query.device_id, query.point_id),
    )


def _next_url(path: str, params: Mapping[str, Sequence[str]], cursor: str) -> str:
    kept = [(k, v[0]) for k, v in params.items() if k != "cursor" and v]
    return f"{path}?{urlencode([*kept, ('cursor', cursor)])}"


@tenant_reader
def _get_points(request: HttpRequest, tenant_id: uuid.UUID) -> HttpResponse:
    params = _params(request)
    query = parse_query(params, request.headers.get("Accept", ""))
    series = queries.find_series(tenant_id, query.device_id, query.point_id)
    if series is None:
        raise _not_found(query)
    chosen, page, next_url = _read_page(query, series, request.path, params)
    if query.format == "csv":
        return _csv_response(chosen, series.shape, page, next_url)
    return SplicedJsonResponse(_json_parts(query, chosen, page, next_url))


def _plan_page(
    query: PointsQuery, previous: Cursor | None
) -> tuple[Plan, queries.Calendar | None, datetime]:
    """The plan of a page (its tier, degradation, calendar zone), its calendar buckets if any,
    and the lower bound of its rows (after `previous`'s last row when following a cursor)."""
    pinned = previous.tier if previous else None
    now = datetime.now(UTC)
    calendar = None
    if query.calendar:
        tz, aligned = queries.calendar_zone(query.tz, query.start, query.end)
        if tz is None:
            raise bad_request(
                f"'tz' must be an IANA time zone name such as Europe/Berlin or "
                f"America/Sao_Paulo; got {query.tz!r}"
            )
        chosen = calendar_plan(query, tz, aligned, now, settings.RETENTION_DAYS, pinned_tier=pinned)
        calendar = queries.Calendar(CALENDAR[query.agg], tz)
    else:
        chosen = plan(query, now, settings.RETENTION_DAYS, pinned_tier=pinned)
    lo = max(query.start, previous.after + ONE_MICROSECOND) if previous else query.start
    return chosen, calendar, lo


def _page_next(
    query: PointsQuery,
    tier: str,
    page: queries.Page,
    path: str,
    params: Mapping[str, Sequence[str]],
) -> str | None:
    """The URL of the page after `page` (`path` and `params` with the cursor set), if cut."""
    if not page.cut or page.last is None:
        return None
    token = encode_cursor(Cursor(tier, page.last), query, settings.SECRET_KEY)
    return _next_url(path, params, token)


def _read_page(
    query: PointsQuery, series: queries.Series, path: str, params: Mapping[str, Sequence[str]]
) -> tuple[Plan, queries.Page, str | None]:
    """Plan and read one page of `series`, and the URL of the next page (`path` and `params`
    with the cursor set) when it is cut."""
    previous = decode_cursor(query.cursor, query, settings.SECRET_KEY) if query.cursor else None
    chosen, calendar, lo = _plan_page(query, previous)
    tier = chosen.read_tier
    if query.materialized_only and tier != queries.RAW:
        queries.use_materialized_only()

    read = queries.read_csv_page if query.format == "csv" else queries.read_json_page
    page = read(tier, series, lo, query.end, query.limit, calendar)
    return chosen, page, _page_next(query, tier, page, path, params)


def _json_parts(
    query: PointsQuery, chosen: Plan, page: queries.Page, next_url: str | None
) -> list[bytes]:
    """GET /data/points' JSON answer as parts to send in order (never joined in memory)."""
    head: dict[str, object] = {
        "device_id": str(query.device_id),
        "point_id": str(query.point_id),
        "agg": chosen.tier,
        "start": isoformat(query.start),
        "end": isoformat(query.end),
    }
    if chosen.source is not None:
        head["tz"] = chosen.tz
        head["source_tier"] = chosen.source
    if chosen.degraded:
        head["degraded_from"] = chosen.degraded_from
        head["degraded_to"] = chosen.degraded_to
        head["reason"] = chosen.reason
    if next_url is not None:
        head["next"] = next_url
    # Splice the rows PostgreSQL rendered into the envelope: b'{...,"data":[...]}'.
    return [orjson.dumps(head)[:-1], b',"data":[', *page.parts, b"]}"]


CSV_HEADERS = {
    "numeric": "ts,v_avg,v_min,v_max,n\n",
    "counter": "ts,v_avg,v_min,v_max,n,delta\n",
    "boolean": "ts,first,last,changes,n,true_s\n",
    "text": "ts,first,last,changes,n,time_in\n",
}


def _csv_response(
    chosen: Plan, kind: str, page: queries.Page, next_url: str | None
) -> HttpResponse:
    header = "ts,v\n" if chosen.tier == queries.RAW else CSV_HEADERS[kind]

    def chunks() -> Iterator[bytes]:
        yield header.encode()
        yield from page.parts

    response = StreamingHttpResponse(chunks(), content_type="text/csv; charset=utf-8")
    response["X-Agg"] = chosen.tier
    if chosen.source is not None:
        response["X-Tz"] = chosen.tz or ""
        response["X-Source-Tier"] = chosen.source
    if chosen.degraded:
        response["X-Degraded-From"] = chosen.degraded_from or ""
        response["X-Degraded-To"] = chosen.degraded_to or ""
        response["X-Degraded-Reason"] = chosen.reason or ""
    if next_url is not None:
        response["Link"] = f'<{next_url}>; rel="next"'
    # tenant_reader is typed for HttpResponse; Django serves any HttpResponseBase the same way.
    return cast(HttpResponse, response)


# -- POST /data/query: many series, one snapshot ----------------------------------------------


def _error_element(query: PointsQuery, error: ApiError) -> list[bytes]:
    return [
        orjson.dumps(
            {
                "device_id": str(query.device_id),
                "point_id": str(query.point_id),
                "error": {"code": error.code, "message": error.message},
            }
        )
    ]


def _read_batch(
    batch: BatchQuery,
    planned: tuple[Plan, queries.Calendar | None, datetime],
    readable: Sequence[tuple[PointsQuery, queries.Series]],
) -> list[list[bytes]]:
    """The elements of the series found, in order: each GET /data/points' answer for it, all
    read together (queries.read_json_pages) with the batch's one plan (the queries differ only
    in their series)."""
    chosen, calendar, lo = planned
    tier = chosen.read_tier
    first = readable[0][0]
    pages = queries.read_json_pages(
        tier, [series for _, series in readable], lo, first.end, first.limit, calendar
    )
    elements = []
    for (query, _), page in zip(readable, pages, strict=True):
        params = {"device_id": [str(query.device_id)], "point_id": [str(query.point_id)]}
        next_url = _page_next(query, tier, page, POINTS_PATH, {**params, **batch.params})
        elements.append(_json_parts(query, chosen, page, next_url))
    return elements


@tenant_reader
def _post_query(request: HttpRequest, tenant_id: uuid.UUID) -> HttpResponse:
    # Every statement below runs in the one REPEATABLE READ transaction of tenant_reader: all
    # series are read from one snapshot (the read helper imports it: split.py).
    batch = parse_batch_query(request.body)
    # One plan for every series (they share the window and options); one that fails, a tz
    # PostgreSQL does not know, is the whole request's 400, like any other bad window.
    planned = _plan_page(batch.queries[0], None)
    found = queries.find_many(tenant_id, [(q.device_id, q.point_id) for q in batch.queries])
    if batch.materialized_only:
        # Transaction-wide: set once for the batch (the helper copies it).
        queries.use_materialized_only()
    # A series asked for twice is read once, answered twice; one not found (unknown, or another
    # tenant's) is its not_found element, alike for both.
    place: dict[tuple[uuid.UUID, uuid.UUID], int] = {}
    readable: list[tuple[PointsQuery, queries.Series]] = []
    for query in batch.queries:
        key = (query.device_id, query.point_id)
        series = found.get(key)
        if series is not None and key not in place:
            place[key] = len(readable)
            readable.append((query, series))
    elements = _read_batch(batch, planned, readable) if readable else []
    parts = [b'{"results":[']
    for i, query in enumerate(batch.queries):
        if i:
            parts.append(b",")
        key = (query.device_id, query.point_id)
        if key in place:
            parts.extend(elements[place[key]])
        else:
            parts.extend(_error_element(query, _not_found(query)))
    parts.append(b"]}")
    return SplicedJsonResponse(parts)


@csrf_exempt
def data_query(request: HttpRequest) -> HttpResponse:
    """POST /data/query: many series over one window in one request (DESIGN §7)."""
    if request.method != "POST":
        return error_response(405, "method_not_allowed", "use POST")
    # Read the body before the transaction opens (as POST /data/points does).
    try:
        request.body  # noqa: B018 - reads and caches the body
    except RequestDataTooBig:
        return error_response(413, "body_too_large", "request body too large")
    return _post_query(request)


def get_points(request: HttpRequest) -> HttpResponse:
    """GET /data/points (dispatched from traksense.points.views)."""
    return _get_points(request)


SERIES_PARAMS = frozenset({"device_id", "kind", "limit", "cursor"})
DEVICES_PARAMS = frozenset({"limit", "cursor"})
KINDS = ("numeric", "boolean", "text")
CATALOG_LIMIT = 1000
CATALOG_MAX_LIMIT = 10_000


def _one(params: Mapping[str, Sequence[str]], name: str, allowed: frozenset[str]) -> str | None:
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise bad_request(f"unknown parameter(s) {', '.join(repr(u) for u in unknown)}")
    values = params.get(name) or []
    if len(values) > 1:
        raise bad_request(f"'{name}' is given more than once")
    return values[0] if values else None


def _catalog_limit(params: Mapping[str, Sequence[str]], allowed: frozenset[str]) -> int:
    raw = _one(params, "limit", allowed)
    if raw is None:
        return CATALOG_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        raise bad_request(f"'limit' must be an integer, got {raw!r}") from None
    if not 1 <= limit <= CATALOG_MAX_LIMIT:
        raise bad_request(f"'limit' must be between 1 and {CATALOG_MAX_LIMIT}, got {limit}")
    return limit


# The catalog's cursor: the last (device, point) key of the page, base64url. Opaque to clients;
# a forged one only moves the start of a listing the tenant view already restricts.
def _encode_key(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def _decode_key(raw: str, parts: int) -> list[uuid.UUID]:
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        keys = [uuid.UUID(k) for k in text.split("/")]
    except (ValueError, UnicodeDecodeError):
        keys = []
    if len(keys) != parts:
        raise bad_request("'cursor' is not a cursor of this listing")
    return keys


def _catalog_response(
    request: HttpRequest, params: Mapping[str, Sequence[str]], name: str, page: queries.CatalogPage
) -> HttpResponse:
    head = b'{"' + name.encode() + b'":' + page.body.encode()
    if page.after is not None:
        head += b',"next":' + orjson.dumps(_next_url(request.path, params, _encode_key(page.after)))
    return raw_json_response(head + b"}")


@tenant_reader
def _get_series(request: HttpRequest, tenant_id: uuid.UUID) -> HttpResponse:
    params = _params(request)
    device = _one(params, "device_id", SERIES_PARAMS)
    device_id = parse_uuid(device, "device_id") if device is not None else None
    kind = _one(params, "kind", SERIES_PARAMS)
    if kind is not None and kind not in KINDS:
        raise bad_request(f"'kind' must be one of {', '.join(KINDS)}, got {kind!r}")
    limit = _catalog_limit(params, SERIES_PARAMS)
    cursor = _one(params, "cursor", SERIES_PARAMS)
    after = _decode_key(cursor, 2) if cursor is not None else None
    page = queries.list_series(device_id, kind, (after[0], after[1]) if after else None, limit)
    return _catalog_response(request, params, "series", page)


@tenant_reader
def _get_devices(request: HttpRequest, tenant_id: uuid.UUID) -> HttpResponse:
    params = _params(request)
    limit = _catalog_limit(params, DEVICES_PARAMS)
    cursor = _one(params, "cursor", DEVICES_PARAMS)
    after = _decode_key(cursor, 1)[0] if cursor is not None else None
    return _catalog_response(request, params, "devices", queries.list_devices(after, limit))


def data_devices(request: HttpRequest) -> HttpResponse:
    """GET /data/devices: the tenant's devices, each with its number of points and last sample."""
    if request.method != "GET":
        return error_response(405, "method_not_allowed", "use GET")
    return _get_devices(request)


def data_series(request: HttpRequest) -> HttpResponse:
    """GET /data/series: the tenant's devices and points, with kind and first/last sample."""
    if request.method != "GET":
        return error_response(405, "method_not_allowed", "use GET")
    return _get_series(request)
