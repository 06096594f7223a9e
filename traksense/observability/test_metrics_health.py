"""/metrics and /healthz against a real database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import orjson
import pytest
from django.db import connection
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families
from pytest_django.fixtures import Settings as SettingsWrapper

from traksense.conftest import TenantFixture
from traksense.rollups.jobs import JobResult
from traksense.rollups.refresh import refresh
from traksense.rollups.runner import run_job
from traksense.rollups.test_jobs_support import make_job


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


def test_metrics_show_each_jobs_schedule_runs_and_status(committed_db: None) -> None:
    # DESIGN §5: schedule, last/next run, duration, status and last error of every job, in
    # metrics too. A job that succeeded, one that failed, and one whose worker died mid-run
    # (ts_jobs says crashed), which counts as failing.
    good = make_job("test_metrics_ok", lambda: JobResult("fine", "ok"))
    bad = make_job("test_metrics_bad", lambda: 1 / 0)  # type: ignore[arg-type, return-value]
    assert run_job(good).status == "ok"
    assert run_job(bad).status == "failed"
    with connection.cursor() as cursor:
        cursor.execute("UPDATE ts_job SET last_status = 'running' WHERE name = 'refresh_5m'")
    families = scrape()

    def value(family: str, **labels: str) -> float | None:
        for have, v in families[family]:
            if all(have.get(k) == w for k, w in labels.items()):
                return v
        return None

    assert value("traksense_job_status", job_name="test_metrics_ok", status="ok") == 1
    assert value("traksense_job_status", job_name="test_metrics_ok", status="failed") == 0
    assert value("traksense_job_status", job_name="test_metrics_bad", status="failed") == 1
    assert value("traksense_job_status", job_name="refresh_5m", status="crashed") == 1
    assert value("traksense_job_failing", job_name="test_metrics_ok") == 0
    assert value("traksense_job_failing", job_name="test_metrics_bad") == 1
    assert value("traksense_job_failing", job_name="refresh_5m") == 1
    assert value("traksense_job_schedule_seconds", job_name="refresh_1m") == 60
    assert value("traksense_job_schedule_seconds", job_name="refresh_1h") == 3600
    now = datetime.now(UTC).timestamp()
    started = value("traksense_job_last_run_timestamp_seconds", job_name="test_metrics_ok")
    assert started is not None and now - 60 < started <= now
    assert value("traksense_job_last_success_timestamp_seconds", job_name="test_metrics_ok")
    assert value("traksense_job_last_error_timestamp_seconds", job_name="test_metrics_ok") is None
    assert value("traksense_job_last_error_timestamp_seconds", job_name="test_metrics_bad")
    assert value("traksense_job_next_run_timestamp_seconds", job_name="refresh_1m") is not None
