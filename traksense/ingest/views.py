"""POST /data/points: authenticate, validate the whole batch, write it in one call."""

from __future__ import annotations

import uuid

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from traksense.core.errors import error_response
from traksense.core.jsonio import json_response
from traksense.ingest.parse import parse_batch
from traksense.ingest.write import write_samples
from traksense.observability.metrics import INGEST_BATCHES, INGEST_SAMPLES
from traksense.tenancy.auth import tenant_api


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


@tenant_api
def _ingest(request: HttpRequest, tenant_id: uuid.UUID) -> HttpResponse:
    batch = parse_batch(request.body, timezone.now())
    result = write_samples(batch)
    INGEST_BATCHES.labels("written").inc()
    INGEST_SAMPLES.labels("accepted").inc(result.accepted - result.overwritten)
    INGEST_SAMPLES.labels("overwritten").inc(result.overwritten)
    INGEST_SAMPLES.labels("duplicate").inc(result.duplicates)
    return json_response(result._asdict())
