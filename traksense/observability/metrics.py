"""Every metric the service exports, defined in one place.

Counters and histograms are per process and aggregated across gunicorn workers through
prometheus_client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set by `traksense serve`).
Values that live in the database (job outcomes, rollup lag, sizes) are read at scrape time by
DatabaseCollector, so every worker answers the same. Labels are bounded: no tenant, device or
point ever becomes a label.
"""

from __future__ import annotations

from collections.abc import Iterator

from django.db import connection
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

INGEST_SAMPLES = Counter(
    "traksense_ingest_samples",
    "Samples received by POST /data/points, by outcome.",
    ["outcome"],  # accepted (new) | overwritten | duplicate
)
INGEST_BATCHES = Counter(
    "traksense_ingest_batches",
    "Batches received by POST /data/points, by outcome.",
    ["outcome"],  # written | rejected
)
READ_HALVES = Counter(
    "traksense_read_halves",
    "Pages of GET /data/points read in two halves at once, by who read the second half.",
    ["reader"],  # helper (a second connection) | request (the helper failed; read in turn)
)
CROSS_TENANT_REFUSED = Counter(
    "traksense_cross_tenant_refused",
    "Requests refused (404) for a series that exists, but in another tenant than the key's.",
)
API_KEY_EVENTS = Counter(
    "traksense_api_key_events",
    "API keys created and revoked.",
    ["event"],  # created | revoked
)
TENANT_LIMITED = Counter(
    "traksense_tenant_limited",
    "Requests refused with 429 by a tenant limit, by limit.",
    ["limit"],  # ingest_rate | read_concurrency
)
MQTT_MESSAGES = Counter(
    "traksense_mqtt_messages",
    "MQTT uplink messages handled by the consumer, by outcome.",
    ["outcome"],  # written | rejected
)
MQTT_SAMPLES = Counter(
    "traksense_mqtt_samples",
    "Samples of MQTT messages written, by outcome.",
    ["outcome"],  # accepted (new) | overwritten | duplicate
)
MQTT_REJECTED = Counter(
    "traksense_mqtt_rejected",
    "MQTT messages rejected (answered on their errors topic), by error code.",
    ["code"],
)
MQTT_BATCH_SECONDS = Histogram(
    "traksense_mqtt_batch_seconds",
    "Time to validate, write and acknowledge one batch of MQTT messages.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
MQTT_LAG_SECONDS = Gauge(
    "traksense_mqtt_lag_seconds",
    "Consumer lag: seconds from receiving the oldest message of the last batch to its commit.",
    multiprocess_mode="max",
)
REQUEST_SECONDS = Histogram(
    "traksense_http_request_duration_seconds",
    "HTTP request latency by endpoint, method and status class.",
    ["endpoint", "method", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

_TIER_SQL = """
SELECT t.tier,
       -- PostgreSQL 15 cannot subtract infinite timestamps (a tier never refreshed).
       CASE WHEN isfinite(t.watermark) THEN extract(epoch FROM now() - t.watermark) END AS lag,
       coalesce(sum(pg_total_relation_size(p.name::regclass)), 0) AS bytes,
       coalesce(sum(c.reltuples) FILTER (WHERE c.reltuples > 0), 0) AS rows
FROM ts_tier t
LEFT JOIN ts_partition p ON p.tier = t.tier
LEFT JOIN pg_class c ON c.oid = to_regclass(p.name)
GROUP BY t.tier, t.watermark
ORDER BY t.tier
"""

_COMPRESSION_SQL = "SELECT tier, bytes_after, ratio FROM ts_compression_stats"

# Through the ts_jobs view: its status tells a crashed run (a worker killed mid-run) apart.
_JOBS_SQL = """
SELECT name, runs, failures, crashes, coalesce(extract(epoch FROM last_duration), 0), status,
       extract(epoch FROM schedule), extract(epoch FROM next_run), extract(epoch FROM last_start),
       extract(epoch FROM last_success), extract(epoch FROM last_error_at)
FROM ts_jobs ORDER BY name
"""
# The states traksense_job_status reports (ts_jobs.status), one series per job and state.
JOB_STATES = ("running", "ok", "skipped", "failed", "crashed", "never run")


class DatabaseCollector(Collector):
    """Reads tier and job state from PostgreSQL on every scrape."""

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        lag = GaugeMetricFamily(
            "traksense_rollup_lag_seconds",
            "Seconds between now and the end of the last refreshed window of a tier.",
            labels=["tier"],
        )
        size = GaugeMetricFamily(
            "traksense_tier_bytes", "Bytes on disk of a tier (tables and indexes).", labels=["tier"]
        )
        rows = GaugeMetricFamily(
            "traksense_tier_rows", "Estimated rows of a tier (planner statistics).", labels=["tier"]
        )
        with connection.cursor() as cursor:
            cursor.execute(_TIER_SQL)
            for tier, lag_s, nbytes, nrows in cursor.fetchall():
                if tier != "raw" and lag_s is not None:
                    lag.add_metric([tier], float(lag_s))
                size.add_metric([tier], float(nbytes))
                rows.add_metric([tier], float(nrows))
        yield lag
        yield size
        yield rows
        yield from self._compression()
        yield from self._jobs()

    def _compression(self) -> Iterator[GaugeMetricFamily]:
        ratio = GaugeMetricFamily(
            "traksense_compression_ratio",
            "Bytes the compressed rows of a tier took uncompressed, over the bytes they take now.",
            labels=["tier"],
        )
        compressed = GaugeMetricFamily(
            "traksense_compressed_bytes", "Bytes of a tier's compressed store.", labels=["tier"]
        )
        with connection.cursor() as cursor:
            cursor.execute(_COMPRESSION_SQL)
            for tier, bytes_after, value in cursor.fetchall():
                compressed.add_metric([tier], float(bytes_after or 0))
                if value is not None:
                    ratio.add_metric([tier], float(value))
        yield ratio
        yield compressed

    def _jobs(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        def gauge(
            name: str, text: str, labels: tuple[str, ...] = ("job_name",)
        ) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, text, labels=list(labels))

        runs = CounterMetricFamily("traksense_job_runs", "Runs of a job.", labels=["job_name"])
        failures = CounterMetricFamily(
            "traksense_job_failures", "Failed runs of a job.", labels=["job_name"]
        )
        crashes = CounterMetricFamily(
            "traksense_job_crashes", "Runs of a job its worker died in.", labels=["job_name"]
        )
        duration = gauge("traksense_job_last_duration_seconds", "Duration of a job's last run.")
        failing = gauge("traksense_job_failing", "1 when a job's last run failed or crashed.")
        status = gauge(
            "traksense_job_status",
            "1 for the status of a job's last run (ts_jobs.status), 0 for the others.",
            ("job_name", "status"),
        )
        schedule = gauge("traksense_job_schedule_seconds", "How often a job runs.")
        times = [
            gauge("traksense_job_next_run_timestamp_seconds", "When a job runs next (Unix time)."),
            gauge("traksense_job_last_run_timestamp_seconds", "When a job's last run started."),
            gauge("traksense_job_last_success_timestamp_seconds", "When a job last succeeded."),
            gauge(
                "traksense_job_last_error_timestamp_seconds",
                "When a job last failed (its error: ts_jobs.last_error, `traksense jobs`).",
            ),
        ]
        with connection.cursor() as cursor:
            cursor.execute("SELECT to_regclass('ts_job') IS NOT NULL")
            row = cursor.fetchone()
            if row and row[0]:
                cursor.execute(_JOBS_SQL)
                for (
                    name,
                    n_runs,
                    n_failures,
                    n_crashes,
                    seconds,
                    state,
                    every,
                    *at,
                ) in cursor.fetchall():
                    runs.add_metric([name], float(n_runs or 0))
                    failures.add_metric([name], float(n_failures or 0))
                    crashes.add_metric([name], float(n_crashes or 0))
                    duration.add_metric([name], float(seconds))
                    failing.add_metric([name], 1.0 if state in ("failed", "crashed") else 0.0)
                    for known in JOB_STATES:
                        status.add_metric([name, known], 1.0 if state == known else 0.0)
                    schedule.add_metric([name], float(every))
                    for family, value in zip(times, at, strict=True):
                        if value is not None:
                            family.add_metric([name], float(value))
        yield from (runs, failures, crashes)
        yield from (duration, failing, status, schedule, *times)
