"""Audit: structured log lines (logger traksense.audit) and metrics for key creation and
revocation and for refused cross-tenant attempts at the HTTP boundary.

A request for another tenant's series gets the same 404 as one for a series that does not
exist (the web role cannot even tell them apart). Afterwards, on the owner's connection, this
module looks whether the series exists in another tenant, and if so records the attempt: the
key's tenant and prefix, never the other tenant's id (an operator finds it from the series).
"""

from __future__ import annotations

import logging
import uuid

from django.db import connections

from traksense.observability.metrics import API_KEY_EVENTS, CROSS_TENANT_REFUSED

log = logging.getLogger("traksense.audit")

_ELSEWHERE = (
    "SELECT k.prefix, EXISTS (SELECT FROM ts_series s WHERE s.device_id = %s"
    " AND s.point_id = %s AND s.tenant_id <> k.tenant_id)"
    " FROM api_key k WHERE k.id = %s"
)


def key_created(tenant_id: uuid.UUID, key_id: int, prefix: str, read_only: bool) -> None:
    API_KEY_EVENTS.labels("created").inc()
    log.info(
        "api_key_created tenant=%s key_id=%s prefix=%s scope=%s",
        tenant_id,
        key_id,
        prefix,
        "read" if read_only else "read-write",
    )


def key_revoked(tenant_id: uuid.UUID, key_id: int, prefix: str) -> None:
    API_KEY_EVENTS.labels("revoked").inc()
    log.info("api_key_revoked tenant=%s key_id=%s prefix=%s", tenant_id, key_id, prefix)


def series_refused(
    tenant_id: uuid.UUID, key_id: int, device_id: uuid.UUID, point_id: uuid.UUID
) -> bool:
    """After a 404 for (device, point): record it when the series is another tenant's; whether
    it was. Runs on the owner's connection, outside the request's tenant transaction."""
    with connections["default"].cursor() as cursor:
        cursor.execute(_ELSEWHERE, [device_id, point_id, key_id])
        row = cursor.fetchone()
    if row is None or not row[1]:
        return False
    CROSS_TENANT_REFUSED.inc()
    log.warning(
        "cross_tenant_refused tenant=%s key_id=%s prefix=%s device_id=%s point_id=%s",
        tenant_id,
        key_id,
        row[0],
        device_id,
        point_id,
    )
    return True
