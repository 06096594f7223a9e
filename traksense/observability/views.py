"""/healthz and /metrics."""

from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, HttpResponse

from traksense.core.jsonio import json_response


def healthz(request: HttpRequest) -> HttpResponse:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any failure means unhealthy
        return json_response({"status": "error", "database": str(exc)}, status=503)
    return json_response({"status": "ok", "database": "ok"})


def metrics(request: HttpRequest) -> HttpResponse:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return HttpResponse(generate_latest(), content_type=CONTENT_TYPE_LATEST)
