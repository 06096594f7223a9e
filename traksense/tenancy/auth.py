"""Bearer-key authentication for tenant API views.

The key itself goes to the database, which checks its hash and binds the request's transaction
to its tenant (ts_bind_key, on the web role's connection: settings.API_DATABASE). Limits are
checked there too: a read takes one of the tenant's read slots in the same statement; a write
is admitted by ingest.limits before its transaction.
"""

from __future__ import annotations

import functools
import math
import uuid
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from traksense.core.errors import ApiError, error_response
from traksense.db.context import KeyBinding, key_tenant_context
from traksense.observability.metrics import TENANT_LIMITED
from traksense.tenancy import audit
from traksense.tenancy.keys import note_use, plausible_key

TenantView = Callable[[HttpRequest, uuid.UUID], HttpResponse]


def bearer_key(request: HttpRequest) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return None
    return key.strip()


def missing_key() -> HttpResponse:
    return error_response(
        401, "unauthorized", "missing API key: send 'Authorization: Bearer <key>'"
    )


def unknown_key() -> HttpResponse:
    return error_response(401, "unauthorized", "unknown, revoked or expired API key")


def read_only_key() -> HttpResponse:
    return error_response(403, "read_only_key", "this API key is read-only: it cannot write")


def limited(limit: str, retry_after: float) -> HttpResponse:
    """429 for a tenant limit, naming it, with Retry-After in whole seconds (at least 1)."""
    TENANT_LIMITED.labels(limit).inc()
    seconds = max(1, math.ceil(retry_after))
    what = {
        "ingest_rate": "the tenant's ingest rate (samples per second)",
        "read_concurrency": "the tenant's concurrent reads",
    }.get(limit, limit)
    response = error_response(
        429, "rate_limited", f"over {what} limit ({limit}); retry in {seconds} s"
    )
    response["Retry-After"] = str(seconds)
    return response


def tenant_api(view: TenantView) -> Callable[[HttpRequest], HttpResponse]:
    """Authenticate the request's key, then run the view inside its tenant's transaction.
    A read-only key gets 403.

    Errors raised as ApiError become JSON answers and roll the transaction back, so a rejected
    request writes nothing.
    """
    return _authenticated(view, reader=False)


def tenant_reader(view: TenantView) -> Callable[[HttpRequest], HttpResponse]:
    """tenant_api for views that only read: their transaction is REPEATABLE READ, READ ONLY, one
    snapshot for the whole request (traksense/db/context.py), holding one of the tenant's read
    slots (429 read_concurrency when none is free); read-only keys may use them."""
    return _authenticated(view, reader=True)


def _authenticated(view: TenantView, reader: bool) -> Callable[[HttpRequest], HttpResponse]:
    @functools.wraps(view)
    def wrapper(request: HttpRequest) -> HttpResponse:
        key = bearer_key(request)
        if key is None:
            return missing_key()
        if not plausible_key(key):
            return unknown_key()
        bound: KeyBinding | None = None
        refused: ApiError | None = None
        try:
            # The key check and the switch to its tenant are one statement of the transaction.
            with key_tenant_context(
                key, using=settings.API_DATABASE, reader=reader, read_slot=reader
            ) as bound:
                if bound is None:
                    return unknown_key()
                if bound.refused is not None:
                    return limited(bound.refused, 1)
                if bound.read_only and not reader:
                    return read_only_key()
                response = view(request, bound.tenant_id)
        except ApiError as exc:
            refused = exc
            response = error_response(exc.status, exc.code, exc.message)
        if bound is not None:
            note_use(bound.key_id)
            if refused is not None and refused.series is not None:
                audit.series_refused(bound.tenant_id, bound.key_id, *refused.series)
        return response

    return wrapper
