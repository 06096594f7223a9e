"""The API's error shape: {"error": {"code": ..., "message": ...}} with a 4xx status."""

from __future__ import annotations

import uuid

from django.http import HttpResponse

from traksense.core.jsonio import json_response


class ApiError(Exception):
    """Raised anywhere below a view; answered as a JSON error with `status`."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        series: tuple[uuid.UUID, uuid.UUID] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        # A 404's (device_id, point_id), for the audit of cross-tenant attempts.
        self.series = series


def bad_request(message: str, code: str = "bad_request") -> ApiError:
    return ApiError(400, code, message)


def error_response(status: int, code: str, message: str) -> HttpResponse:
    return json_response({"error": {"code": code, "message": message}}, status=status)


def malformed(request: object, exception: Exception | None = None) -> HttpResponse:
    # Django's own 400s (an invalid Host header, other SuspiciousOperations) in the API's error
    # shape instead of Django's HTML page; the details go to the django.security log.
    return error_response(400, "bad_request", "malformed request (invalid Host header?)")


def not_found(request: object, exception: Exception | None = None) -> HttpResponse:
    return error_response(404, "not_found", "no such endpoint")


def server_error(request: object) -> HttpResponse:
    # Details go to the log, never to the client.
    return error_response(500, "internal_error", "internal error; see the server log")
