"""POST /data/points: authenticate, validate the whole batch, write it in one call."""

from __future__ import annotations

import uuid

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from traksense.core.errors import ApiError, error_response
from traksense.core.jsonio import json_response
from traksense.ingest.limits import admit
from traksense.ingest.parse import Batch, parse_batch
from traksense.ingest.write import write_samples
from traksense.observability.metrics import INGEST_BATCHES, INGEST_SAMPLES
from traksense.tenancy.auth import (
    bearer_key,
    limited,
    missing_key,
    read_only_key,
    tenant_api,
    unknown_key,
)
from traksense.tenancy.keys import plausible_key


def post_points(request: HttpRequest) -> HttpResponse:
    """Answer {"accepted": N, "duplicates": M, "overwritten": K}; see DESIGN §7."""
    # Read the body before tenant_api opens the tenant transaction, so that a slow upload never
    # holds a transaction open. Django refuses bodies over DATA_UPLOAD_MAX_MEMORY_SIZE.
    try:
        request.body  # noqa: B018 - reads and caches the body
    except RequestDataTooBig:
        return error_response(
            413, "body_too_large", "request body too large; send fewer samples per batch"
        )
    response = _ingest(request)
    if response.status_code != 200:
        INGEST_BATCHES.labels("rejected").inc()
    return response


def _ingest(request: HttpRequest) -> HttpResponse:
    # Key, then batch, then the tenant's ingest rate, then the write: a malformed batch costs
    # the tenant nothing, and a batch over the rate opens no write transaction. Who asks is
    # answered first: a malformed batch with an unknown or read-only key is that key's 401 or
    # 403, not a 400 (the key is looked up only then, charging nothing).
    key = bearer_key(request)
    if key is None:
        return missing_key()
    if not plausible_key(key):
        return unknown_key()
    try:
        batch = parse_batch(request.body, timezone.now())
    except ApiError as exc:
        asker = admit(key, 0)
        if not asker.known:
            return unknown_key()
        if asker.read_only:
            return read_only_key()
        return error_response(exc.status, exc.code, exc.message)
    admission = admit(key, len(batch.ts))
    if not admission.known:
        return unknown_key()
    if admission.read_only:
        return read_only_key()
    if admission.refused is not None:
        return limited(admission.refused, admission.retry_after)

    @tenant_api
    def write(request: HttpRequest, tenant_id: uuid.UUID) -> HttpResponse:
        return _write(batch)

    return write(request)


def _write(batch: Batch) -> HttpResponse:
    result = write_samples(batch)
    INGEST_BATCHES.labels("written").inc()
    INGEST_SAMPLES.labels("accepted").inc(result.accepted - result.overwritten)
    INGEST_SAMPLES.labels("overwritten").inc(result.overwritten)
    INGEST_SAMPLES.labels("duplicate").inc(result.duplicates)
    return json_response(result._asdict())
