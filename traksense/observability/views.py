"""/healthz and /metrics."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
    start_http_server,
)

from traksense.core.jsonio import json_response
from traksense.observability.health import check_health
from traksense.observability.metrics import DatabaseCollector


def healthz(request: HttpRequest) -> HttpResponse:
    report = check_health()
    return json_response(report, status=200 if report["status"] == "ok" else 503)


def metrics(request: HttpRequest) -> HttpResponse:
    database = CollectorRegistry()
    database.register(DatabaseCollector())
    if settings.PROMETHEUS_MULTIPROC_DIR:
        # Several gunicorn workers: merge every worker's counters from the shared directory.
        multiprocess.MultiProcessCollector(database)  # type: ignore[no-untyped-call]
        body = generate_latest(database)
    else:
        body = generate_latest(REGISTRY) + generate_latest(database)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)


def serve_metrics(port: int, host: str) -> None:
    """Serve this process's counters on http://host:port/metrics from a daemon thread
    (prometheus_client's own server): a standalone `traksense mqtt` has no API whose /metrics
    would carry them. The database's values stay the API's to export; with
    PROMETHEUS_MULTIPROC_DIR set, the counters of every process sharing the directory."""
    registry: CollectorRegistry = REGISTRY
    if settings.PROMETHEUS_MULTIPROC_DIR:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    start_http_server(port, addr=host, registry=registry)
