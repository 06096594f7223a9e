"""The point explorer page and the static assets shipped in the package."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse


def explorer(request: HttpRequest) -> HttpResponse:
    return HttpResponse("explorer: not yet", status=503, content_type="text/plain")


def asset(request: HttpRequest, name: str) -> HttpResponse:
    return HttpResponse("not found", status=404, content_type="text/plain")
