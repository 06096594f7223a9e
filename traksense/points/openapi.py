"""The OpenAPI 3.1 description of the HTTP API, served at GET /openapi.json.

Written by hand (the API is small) and kept beside the read path; the test suite parses it and
runs schemathesis against a live server with it, so it cannot drift from what the code answers.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse

from traksense.core.errors import error_response
from traksense.core.jsonio import json_response
from traksense.ingest.parse import MAX_MAGNITUDE, MAX_TEXT_CHARS, MIN_MAGNITUDE
from traksense.points.batch import MAX_SERIES
from traksense.points.resolution import AGGS, DEFAULT_MAX_POINTS, MAX_LIMIT

_UUID: dict[str, Any] = {"type": "string", "format": "uuid"}
_TS: dict[str, Any] = {"type": "string", "format": "date-time"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": _ref("Error")}},
    }


def _query(name: str, schema: dict[str, Any], description: str, required: bool = False) -> Any:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "schema": schema,
        "description": description,
    }


_GET_POINTS_PARAMS = [
    _query("device_id", _UUID, "Device of the series.", required=True),
    _query("point_id", _UUID, "Point of the series.", required=True),
    _query("start", _TS, "Inclusive start, RFC 3339 with an offset.", required=True),
    _query("end", _TS, "Exclusive end, RFC 3339 with an offset; after start.", required=True),
    _query(
        "agg",
        {"type": "string", "enum": list(AGGS), "default": "raw"},
        "Tier to read: raw samples, 1-minute, 5-minute or 1-hour rollups, auto (the finest "
        "rollup whose bucket count fits max_points), or calendar buckets in tz: 1d (local "
        "days), 1w (ISO weeks, from Monday), 1mo (months). On boolean and text points the "
        "rollup tiers answer state rows; calendar buckets are numeric only.",
    ),
    _query(
        "tz",
        {"type": "string", "maxLength": 64, "examples": ["America/Sao_Paulo"]},
        "agg=1d|1w|1mo only: the IANA time zone whose local midnights start the buckets "
        "(DST-correct); default the tenant's zone, else UTC. Row ts stay UTC.",
    ),
    _query(
        "materialized_only",
        {"type": "boolean", "default": False},
        "Rollups only: leave out the newest buckets not yet materialized.",
    ),
    _query(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": MAX_LIMIT},
        "Largest number of rows in one page.",
    ),
    _query(
        "max_points",
        {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_MAX_POINTS},
        "agg=auto only: the most buckets the answer should hold.",
    ),
    _query("cursor", {"type": "string"}, "Opaque; taken from the previous page's next URL."),
    _query(
        "format",
        {"type": "string", "enum": ["json", "csv"]},
        "Answer format; without it, Accept: text/csv selects CSV.",
    ),
]

_ROW_RAW = {
    "type": "object",
    "required": ["ts", "v"],
    "properties": {"ts": _TS, "v": {"type": ["number", "boolean", "string"]}},
    "additionalProperties": False,
}
_ROW_AGG = {
    "type": "object",
    "required": ["ts", "v_avg", "v_min", "v_max", "n"],
    "properties": {
        "ts": {**_TS, "description": "Bucket start."},
        "v_avg": {"type": "number"},
        "v_min": {"type": "number"},
        "v_max": {"type": "number"},
        "n": {"type": "integer", "minimum": 1},
        "delta": {
            "type": ["number", "null"],
            "description": "Counters only: the increase in the bucket, resets counted as from "
            "zero; null where the samples expired before the point was marked.",
        },
    },
    "additionalProperties": False,
}
_STATE_COMMON = {
    "ts": {**_TS, "description": "Bucket start."},
    "changes": {"type": "integer", "minimum": 0},
    "n": {
        "type": "integer",
        "minimum": 0,
        "description": "Samples in the bucket; 0 in a bucket only a hold reaches.",
    },
}
_ROW_BOOLEAN = {
    "type": "object",
    "required": ["ts", "first", "last", "changes", "n", "true_s"],
    "properties": {
        **_STATE_COMMON,
        "first": {"type": ["boolean", "null"]},
        "last": {"type": ["boolean", "null"]},
        "true_s": {"type": "number", "minimum": 0, "description": "Seconds true."},
    },
    "additionalProperties": False,
}
_ROW_TEXT = {
    "type": "object",
    "required": ["ts", "first", "last", "changes", "n", "time_in"],
    "properties": {
        **_STATE_COMMON,
        "first": {"type": ["string", "null"]},
        "last": {"type": ["string", "null"]},
        "time_in": {
            "type": "object",
            "additionalProperties": {"type": "number", "minimum": 0},
            "description": 'Seconds per value (16 at most, the rest as "other").',
        },
    },
    "additionalProperties": False,
}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            }
        },
    },
    "Points": {
        "type": "object",
        "required": ["device_id", "point_id", "agg", "start", "end", "data"],
        "properties": {
            "device_id": _UUID,
            "point_id": _UUID,
            "agg": {"type": "string", "enum": ["raw", "1m", "5m", "1h", "1d", "1w", "1mo"]},
            "start": _TS,
            "end": _TS,
            "tz": {"type": "string", "description": "Calendar aggs: the zone of the buckets."},
            "source_tier": {
                "type": "string",
                "enum": ["1m", "5m", "1h"],
                "description": "Calendar aggs: the rollup tier the buckets were summed from.",
            },
            "data": {
                "type": "array",
                "items": {"anyOf": [_ROW_RAW, _ROW_AGG, _ROW_BOOLEAN, _ROW_TEXT]},
            },
            "degraded_from": {"type": "string", "enum": ["raw", "1m", "5m"]},
            "degraded_to": {"type": "string", "enum": ["1m", "5m", "1h"]},
            "reason": {"type": "string"},
            "next": {"type": "string", "description": "Relative URL of the next page."},
        },
    },
    "Query": {
        "type": "object",
        "required": ["series"],
        "properties": {
            "series": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_SERIES,
                "items": {
                    "type": "object",
                    "required": ["device_id", "point_id"],
                    "properties": {"device_id": _UUID, "point_id": _UUID},
                    "additionalProperties": False,
                },
            },
            "start": _TS,
            "end": _TS,
            "agg": {
                "type": "string",
                "enum": ["auto", "raw", "1m", "5m", "1h", "1d", "1w", "1mo"],
            },
            "tz": {"type": "string"},
            "limit": {"type": "integer", "minimum": 1},
            "max_points": {"type": "integer", "minimum": 1},
            "materialized_only": {"type": "boolean"},
        },
        "additionalProperties": False,
        "description": "The window and options of GET /data/points, once for every series.",
    },
    "QueryResults": {
        "type": "object",
        "required": ["results"],
        "properties": {
            "results": {
                "type": "array",
                "description": "One element per requested series, in request order: the answer"
                " GET /data/points gives for it, or an error (not_found for a series unknown"
                " to this tenant, another tenant's included).",
                "items": {
                    "anyOf": [
                        _ref("Points"),
                        {
                            "type": "object",
                            "required": ["device_id", "point_id", "error"],
                            "properties": {
                                "device_id": _UUID,
                                "point_id": _UUID,
                                "error": {
                                    "type": "object",
                                    "required": ["code", "message"],
                                    "properties": {
                                        "code": {"type": "string"},
                                        "message": {"type": "string"},
                                    },
                                },
                            },
                        },
                    ]
                },
            }
        },
    },
    "Sample": {
        "type": "object",
        "required": ["device_id", "point_id", "ts", "value"],
        "properties": {
            "device_id": _UUID,
            "point_id": _UUID,
            "ts": _TS,
            "value": {
                "type": ["number", "boolean", "string"],
                "description": "A number must be 0 or of a magnitude between"
                f" {MIN_MAGNITUDE:g} and {MAX_MAGNITUDE:g} (400 otherwise: the rollups sum and"
                f" average in float8); a string has at most {MAX_TEXT_CHARS} characters.",
            },
        },
        "additionalProperties": False,
    },
    "Batch": {
        "type": "object",
        "required": ["samples"],
        "properties": {"samples": {"type": "array", "minItems": 1, "items": _ref("Sample")}},
        "additionalProperties": False,
    },
    "IngestResult": {
        "type": "object",
        "required": ["accepted", "duplicates"],
        "properties": {
            "accepted": {"type": "integer", "minimum": 0},
            "duplicates": {"type": "integer", "minimum": 0},
            "overwritten": {"type": "integer", "minimum": 0},
        },
    },
    "Series": {
        "type": "object",
        "required": ["series"],
        "properties": {
            "series": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["device_id", "point_id", "kind", "first", "last"],
                    "properties": {
                        "device_id": _UUID,
                        "point_id": _UUID,
                        "kind": {"type": "string", "enum": ["numeric", "boolean", "text"]},
                        "first": {"type": ["string", "null"], "format": "date-time"},
                        "last": {"type": ["string", "null"], "format": "date-time"},
                    },
                },
            },
            "next": {"type": "string", "description": "Relative URL of the following page."},
        },
    },
    "Devices": {
        "type": "object",
        "required": ["devices"],
        "properties": {
            "devices": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["device_id", "points", "last"],
                    "properties": {
                        "device_id": _UUID,
                        "points": {"type": "integer", "minimum": 1},
                        "last": {"type": ["string", "null"], "format": "date-time"},
                    },
                },
            },
            "next": {"type": "string", "description": "Relative URL of the following page."},
        },
    },
}

_CATALOG_PAGE = [
    _query(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": 10000, "default": 1000},
        "Page size.",
    ),
    _query("cursor", {"type": "string"}, "Opaque: from the previous page's `next`."),
]

_AUTH_ERRORS = {"401": _error("Missing, unknown, revoked or expired API key.")}
_LIMITED = {
    "429": {
        "description": "Over one of the tenant's limits (the message names it: ingest_rate or"
        " read_concurrency); nothing was done. Retry after the Retry-After seconds.",
        "headers": {"Retry-After": {"schema": {"type": "integer", "minimum": 1}}},
        "content": {"application/json": {"schema": _ref("Error")}},
    }
}
_READ_ONLY = {"403": _error("The API key is read-only; nothing was written.")}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "TrakSense Telemetry API",
        "version": "0.1.0",
        "description": "Multi-tenant telemetry: ingest samples, read raw data and rollups.",
    },
    "components": {
        "schemas": SCHEMAS,
        "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
    },
    "security": [{"apiKey": []}],
    "paths": {
        "/data/points": {
            "get": {
                "operationId": "getPoints",
                "summary": "Read one series over [start, end) from a tier, paged.",
                "parameters": _GET_POINTS_PARAMS,
                "responses": {
                    "200": {
                        "description": "One page of the series. CSV carries the tier in X-Agg, "
                        "degradation in X-Degraded-* headers and the next page in a Link header.",
                        "content": {
                            "application/json": {"schema": _ref("Points")},
                            "text/csv": {"schema": {"type": "string"}},
                        },
                    },
                    "400": _error("Invalid parameters."),
                    **_AUTH_ERRORS,
                    "404": _error("No such series for this tenant."),
                    **_LIMITED,
                },
            },
            "post": {
                "operationId": "postPoints",
                "summary": "Ingest a batch of samples, atomically and idempotently.",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("Batch")}},
                },
                "responses": {
                    "200": {
                        "description": "Counts of the batch.",
                        "content": {"application/json": {"schema": _ref("IngestResult")}},
                    },
                    "400": _error("Invalid batch; nothing was written."),
                    **_AUTH_ERRORS,
                    **_READ_ONLY,
                    "413": _error("Batch too large; nothing was written."),
                    **_LIMITED,
                },
            },
        },
        "/data/query": {
            "post": {
                "operationId": "postQuery",
                "summary": "Read many series over one window in one request, from one snapshot.",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("Query")}},
                },
                "responses": {
                    "200": {
                        "description": "One element per requested series.",
                        "content": {"application/json": {"schema": _ref("QueryResults")}},
                    },
                    "400": _error("Invalid body or window."),
                    **_AUTH_ERRORS,
                    "413": _error("Body too large."),
                    **_LIMITED,
                },
            }
        },
        "/data/series": {
            "get": {
                "operationId": "getSeries",
                "summary": "The tenant's series with kind and first/last raw sample time, "
                "ordered by device and point, paged.",
                "parameters": [
                    _query("device_id", _UUID, "Only the series of this device."),
                    _query(
                        "kind",
                        {"type": "string", "enum": ["numeric", "boolean", "text"]},
                        "Only the series of this kind.",
                    ),
                    *_CATALOG_PAGE,
                ],
                "responses": {
                    "200": {
                        "description": "The series.",
                        "content": {"application/json": {"schema": _ref("Series")}},
                    },
                    "400": _error("Invalid parameters."),
                    **_AUTH_ERRORS,
                    **_LIMITED,
                },
            }
        },
        "/data/devices": {
            "get": {
                "operationId": "getDevices",
                "summary": "The tenant's devices with their number of points and newest sample, "
                "paged.",
                "parameters": _CATALOG_PAGE,
                "responses": {
                    "200": {
                        "description": "The devices.",
                        "content": {"application/json": {"schema": _ref("Devices")}},
                    },
                    "400": _error("Invalid parameters."),
                    **_AUTH_ERRORS,
                    **_LIMITED,
                },
            }
        },
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "summary": "Liveness and database reachability.",
                "security": [],
                "responses": {
                    "200": {
                        "description": "Healthy.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    "503": {
                        "description": "The database is unreachable.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics in the text exposition format.",
                "security": [],
                "responses": {
                    "200": {
                        "description": "Metrics.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
    },
}


def openapi_json(request: HttpRequest) -> HttpResponse:
    """GET /openapi.json."""
    if request.method != "GET":
        return error_response(405, "method_not_allowed", "use GET")
    return json_response(DOCUMENT)
