"""From a POST /data/query body to one PointsQuery per requested series.

Pure: no database. The window and options of the body are checked once, by the very parser of
GET /data/points (resolution.parse_query), so a batch element means exactly what the same GET
query string would; only the series list is the batch's own.

Duplicates: a series asked for twice is answered twice, at both places (the answer keeps one
element per requested series, in request order); it is read once (read.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass

import orjson

from traksense.core.errors import bad_request
from traksense.points.resolution import PointsQuery, parse_query, parse_uuid

MAX_SERIES = 100

KNOWN_FIELDS = frozenset(
    {"start", "end", "agg", "series", "limit", "materialized_only", "max_points", "tz"}
)


@dataclass(frozen=True)
class BatchQuery:
    """A validated POST /data/query body: one query per requested series, in request order."""

    queries: tuple[PointsQuery, ...]
    materialized_only: bool
    # The window and options as given, in query-string form: what a series' `next` URL (a GET
    # /data/points page) carries besides its device, point and cursor.
    params: Mapping[str, list[str]]


def _text(body: dict[str, object], name: str) -> list[str]:
    """A body field as the one-value list a query string would hold ([] when absent)."""
    value = body.get(name)
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    raise bad_request(f"'{name}' must be a string, got {type(value).__name__}")


def _integer(body: dict[str, object], name: str) -> list[str]:
    value = body.get(name)
    if value is None:
        return []
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request(f"'{name}' must be an integer, got {orjson.dumps(value).decode()}")
    return [str(value)]


def _flag(body: dict[str, object], name: str) -> list[str]:
    value = body.get(name)
    if value is None:
        return []
    if not isinstance(value, bool):
        raise bad_request(f"'{name}' must be true or false, got {orjson.dumps(value).decode()}")
    return ["true" if value else "false"]


def _series(body: dict[str, object]) -> list[tuple[uuid.UUID, uuid.UUID]]:
    listed = body.get("series")
    if not isinstance(listed, list):
        raise bad_request('\'series\' is required: a list of {"device_id", "point_id"} objects')
    if not 1 <= len(listed) <= MAX_SERIES:
        raise bad_request(
            f"'series' must hold 1 to {MAX_SERIES} series, got {len(listed)}; "
            "split larger dashboards into several requests"
        )
    pairs = []
    for i, item in enumerate(listed):
        if not isinstance(item, dict):
            raise bad_request(f"series[{i}] must be an object with device_id and point_id")
        extra = sorted(set(item) - {"device_id", "point_id"})
        if extra:
            raise bad_request(f"series[{i}] has unknown field(s) {', '.join(map(repr, extra))}")
        ids = []
        for name in ("device_id", "point_id"):
            value = item.get(name)
            if not isinstance(value, str):
                raise bad_request(f"series[{i}].{name} is required: a UUID string")
            ids.append(parse_uuid(value, f"series[{i}].{name}"))
        pairs.append((ids[0], ids[1]))
    return pairs


def parse_batch_query(raw: bytes) -> BatchQuery:
    """Validate a POST /data/query body; raise a 400 ApiError naming the problem."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise bad_request("body must be a JSON object")
    unknown = sorted(set(body) - KNOWN_FIELDS)
    if unknown:
        raise bad_request(
            f"unknown field(s) {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(sorted(KNOWN_FIELDS))}"
        )
    pairs = _series(body)
    # The window and options, checked once by GET's own parser (its messages name the field).
    shared = {
        "start": _text(body, "start"),
        "end": _text(body, "end"),
        "agg": _text(body, "agg"),
        "tz": _text(body, "tz"),
        "limit": _integer(body, "limit"),
        "max_points": _integer(body, "max_points"),
        "materialized_only": _flag(body, "materialized_only"),
    }
    shared = {k: v for k, v in shared.items() if v}
    first = parse_query({**shared, "device_id": [str(pairs[0][0])], "point_id": [str(pairs[0][1])]})
    queries = tuple(
        PointsQuery(
            device_id=device,
            point_id=point,
            start=first.start,
            end=first.end,
            agg=first.agg,
            materialized_only=first.materialized_only,
            limit=first.limit,
            max_points=first.max_points,
            format="json",
            cursor=None,
            tz=first.tz,
        )
        for device, point in pairs
    )
    return BatchQuery(queries=queries, materialized_only=first.materialized_only, params=shared)
