"""GET /data/points, POST /data/query, GET /data/series: parse -> plan -> read -> answer.

Both run inside tenant_reader, hence inside tenant_context: one REPEATABLE READ, READ ONLY
transaction as app_user for the key's tenant. Every page is read and rendered inside that
transaction (large pages with the help of a second connection sharing its snapshot: split.py);
the response only carries text PostgreSQL already produced.
"""

from __future__ import annotations

import dataclasses
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
    Cursor,
    Plan,
    PointsQuery,
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
        return _csv_response(chosen, page, next_url)
    return SplicedJsonResponse(_json_parts(query, chosen, page, next_url))


def _read_page(
    query: PointsQuery, series: queries.Series, path: str, params: Mapping[str, Sequence[str]]
) -> tuple[Plan, queries.Page, str | None]:
    """Plan and read one page of `series`, and the URL of the next page (`path` and `params`
    with the cursor set) when it is cut. Shared by GET /data/points and POST /data/query."""
    secret = settings.SECRET_KEY
    previous = decode_cursor(query.cursor, query, secret) if query.cursor else None
    chosen = plan(
        query,
        series.kind,
        datetime.now(UTC),
        settings.RETENTION_DAYS,
        pinned_tier=previous.tier if previous else None,
    )
    lo = max(query.start, previous.after + ONE_MICROSECOND) if previous else query.start
    if query.materialized_only and chosen.tier != queries.RAW:
        queries.use_materialized_only()

    read = queries.read_csv_page if query.format == "csv" else queries.read_json_page
    page = read(chosen.tier, series, lo, query.end, query.limit)
    next_url = None
    if page.cut and page.last is not None:
        token = encode_cursor(Cursor(chosen.tier, page.last), query, secret)
        next_url = _next_url(path, params, token)
    return chosen, page, next_url


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
    if chosen.degraded:
        head["degraded_from"] = chosen.degraded_from
        head["degraded_to"] = chosen.degraded_to
        head["reason"] = chosen.reason
    if next_url is not None:
        head["next"] = next_url
    # Splice the rows PostgreSQL rendered into the envelope: b'{...,"data":[...]}'.
    return [orjson.dumps(head)[:-1], b',"data":[', *page.parts, b"]}"]


def _csv_response(chosen: Plan, page: queries.Page, next_url: str | None) -> HttpResponse:
    header = "ts,v\n" if chosen.tier == queries.RAW else "ts,v_avg,v_min,v_max,n\n"

    def chunks() -> Iterator[bytes]:
        yield header.encode()
        yield from page.parts

    response = StreamingHttpResponse(chunks(), content_type="text/csv; charset=utf-8")
    response["X-Agg"] = chosen.tier
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


def _element(query: PointsQuery, series: queries.Series | None, batch: BatchQuery) -> list[bytes]:
    """One series' element of the answer: GET /data/points' answer for it, or its error (the
    same not_found for a series unknown and another tenant's, as GET's 404)."""
    if series is None:
        return _error_element(query, _not_found(query))
    params = {
        "device_id": [str(query.device_id)],
        "point_id": [str(query.point_id)],
        **batch.params,
    }
    try:
        chosen, page, next_url = _read_page(query, series, POINTS_PATH, params)
    except ApiError as exc:  # e.g. agg=1m on a boolean point: that series' 400, not the batch's
        return _error_element(query, exc)
    return _json_parts(query, chosen, page, next_url)


@tenant_reader
def _post_query(request: HttpRequest, tenant_id: uuid.UUID) -> HttpResponse:
    # Every statement below runs in the one REPEATABLE READ transaction of tenant_reader: all
    # series are read from one snapshot.
    batch = parse_batch_query(request.body)
    found = queries.find_many(tenant_id, [(q.device_id, q.point_id) for q in batch.queries])
    if batch.materialized_only:
        # Transaction-wide: set once for the batch, not once per series.
        queries.use_materialized_only()
    done: dict[tuple[uuid.UUID, uuid.UUID], list[bytes]] = {}
    parts = [b'{"results":[']
    for i, query in enumerate(batch.queries):
        key = (query.device_id, query.point_id)
        if key not in done:  # a series asked for twice is read once, answered twice
            per_series = dataclasses.replace(query, materialized_only=False)
            done[key] = _element(per_series, found.get(key), batch)
        if i:
            parts.append(b",")
        parts.extend(done[key])
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


SERIES_PARAMS = frozenset({"device_id"})


@tenant_reader
def _get_series(request: HttpRequest, tenant_id: uuid.UUID) -> HttpResponse:
    params = _params(request)
    unknown = sorted(set(params) - SERIES_PARAMS)
    if unknown:
        raise bad_request(f"unknown parameter(s) {', '.join(repr(u) for u in unknown)}")
    device = params.get("device_id") or []
    if len(device) > 1:
        raise bad_request("'device_id' is given more than once")
    device_id = parse_uuid(device[0], "device_id") if device else None
    body = queries.list_series(device_id)
    return raw_json_response(b'{"series":' + body.encode() + b"}")


def data_series(request: HttpRequest) -> HttpResponse:
    """GET /data/series: the tenant's devices and points, with kind and first/last sample."""
    if request.method != "GET":
        return error_response(405, "method_not_allowed", "use GET")
    return _get_series(request)
