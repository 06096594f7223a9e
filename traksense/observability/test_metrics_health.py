"""/metrics and /healthz against a real database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import orjson
import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families
from pytest_django.fixtures import Settings as SettingsWrapper

from traksense.conftest import TenantFixture
from traksense.rollups.refresh import refresh


def scrape() -> dict[str, list[tuple[dict[str, str], float]]]:
    body = Client().get("/metrics").content.decode()
    return {
        family.name: [(sample.labels, sample.value) for sample in family.samples]
        for family in text_string_to_metric_families(body)
    }


def post_one(tenant: TenantFixture, value: float) -> None:
    sample = {
        "device_id": str(uuid.uuid4()),
        "point_id": str(uuid.uuid4()),
        "ts": datetime.now(UTC).isoformat(),
        "value": value,
    }
    response = tenant.client.post(
        "/data/points", orjson.dumps({"samples": [sample]}), content_type="application/json"
    )
    assert response.status_code == 200, response.content


@pytest.mark.django_db
def test_metrics_count_ingested_samples_without_tenant_labels(tenant_a: TenantFixture) -> None:
    before = scrape().get("traksense_ingest_samples", [])
    post_one(tenant_a, 1.5)
    after = scrape()["traksense_ingest_samples"]

    def accepted(samples: list[tuple[dict[str, str], float]]) -> float:
        return sum(v for labels, v in samples if labels.get("outcome") == "accepted")

    assert accepted(after) == accepted(before) + 1
    for family in scrape().values():
        for labels, _ in family:
            assert not {"tenant", "tenant_id", "device_id", "point_id"} & set(labels)


@pytest.mark.django_db
def test_metrics_export_tier_sizes_and_request_latency(tenant_a: TenantFixture) -> None:
    post_one(tenant_a, 2.0)
    families = scrape()
    tiers = {labels["tier"] for labels, _ in families["traksense_tier_bytes"]}
    assert tiers == {"raw", "1m", "5m", "1h"}
    raw_bytes = [v for labels, v in families["traksense_tier_bytes"] if labels["tier"] == "raw"]
    assert raw_bytes[0] > 0
    endpoints = {
        labels["endpoint"] for labels, _ in families["traksense_http_request_duration_seconds"]
    }
    assert "/data/points" in endpoints


@pytest.mark.django_db
def test_healthz_answers_503_with_reasons_before_any_refresh() -> None:
    response = Client().get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["database"] == "ok"
    assert any("1m" in problem for problem in body["problems"])


@pytest.mark.django_db
def test_healthz_reports_each_tier_lag_after_a_refresh(settings: SettingsWrapper) -> None:
    settings.SCHEDULER_ENABLED = False  # no worker in tests: judge lag only
    for tier in ("1m", "5m", "1h"):
        refresh(tier)
    response = Client().get("/healthz")
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok"
    assert set(body["lag_seconds"]) == {"1m", "5m", "1h"}
    assert 0 < body["lag_seconds"]["1m"] < 600
