"""Bearer-key authentication for tenant API views."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from traksense.core.errors import ApiError, error_response
from traksense.db.context import key_tenant_context
from traksense.tenancy.keys import hash_key, plausible_key

TenantView = Callable[[HttpRequest, uuid.UUID], HttpResponse]


def bearer_key(request: HttpRequest) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return None
    return key.strip()


def _unknown_key() -> HttpResponse:
    return error_response(401, "unauthorized", "unknown or revoked API key")


def tenant_api(view: TenantView) -> Callable[[HttpRequest], HttpResponse]:
    """Authenticate the request's key, then run the view inside tenant_context() for its tenant.

    Errors raised as ApiError become JSON answers and roll the transaction back, so a rejected
    request writes nothing.
    """
    return _authenticated(view, reader=False)


def tenant_reader(view: TenantView) -> Callable[[HttpRequest], HttpResponse]:
    """tenant_api for views that only read: their transaction is REPEATABLE READ, READ ONLY, one
    snapshot for the whole request (traksense/db/context.py)."""
    return _authenticated(view, reader=True)


def _authenticated(view: TenantView, reader: bool) -> Callable[[HttpRequest], HttpResponse]:
    @functools.wraps(view)
    def wrapper(request: HttpRequest) -> HttpResponse:
        key = bearer_key(request)
        if key is None:
            return error_response(
                401, "unauthorized", "missing API key: send 'Authorization: Bearer <key>'"
            )
        if not plausible_key(key):
            return _unknown_key()
        try:
            # The key lookup and the switch to its tenant are one statement of the transaction.
            with key_tenant_context(hash_key(key), reader=reader) as tenant_id:
                if tenant_id is None:
                    return _unknown_key()
                return view(request, tenant_id)
        except ApiError as exc:
            return error_response(exc.status, exc.code, exc.message)

    return wrapper
