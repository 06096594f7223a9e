"""The operator status page: jobs, rollup lag, tier sizes and compression, behind OPERATOR_TOKEN."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse


def status_page(request: HttpRequest) -> HttpResponse:
    return HttpResponse("status page: not yet", status=503, content_type="text/plain")


def login(request: HttpRequest) -> HttpResponse:
    return HttpResponse("status page: not yet", status=503, content_type="text/plain")


def logout(request: HttpRequest) -> HttpResponse:
    return HttpResponse("status page: not yet", status=503, content_type="text/plain")
