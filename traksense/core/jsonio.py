"""JSON in and out with orjson: several times faster than the json module on large bodies."""

from __future__ import annotations

from typing import Any

import orjson
from django.http import HttpResponse


def json_response(payload: Any, status: int = 200) -> HttpResponse:
    return HttpResponse(orjson.dumps(payload), status=status, content_type="application/json")


def raw_json_response(body: bytes | str, status: int = 200) -> HttpResponse:
    """A body PostgreSQL already rendered as JSON, passed through untouched."""
    return HttpResponse(body, status=status, content_type="application/json")
