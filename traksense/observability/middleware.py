"""Request latency per endpoint, recorded for every response."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from traksense.observability.metrics import REQUEST_SECONDS


class RequestMetricsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        match = request.resolver_match
        # The route pattern, never the raw path: labels stay bounded whatever clients send.
        endpoint = "/" + match.route if match is not None else "unmatched"
        REQUEST_SECONDS.labels(
            endpoint, request.method or "", f"{response.status_code // 100}xx"
        ).observe(time.perf_counter() - started)
        return response
