"""What /healthz checks: the database answers, the scheduler runs, rollups are not behind."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import connection

# A tier lagging more than this behind now is unhealthy (its refresh runs every
# 1 min / 5 min / 1 h over windows ending 1 min / 5 min / 1 h ago).
MAX_LAG_SECONDS = {"1m": 10 * 60, "5m": 30 * 60, "1h": 3 * 3600}
# The scheduler is alive when some job finished within this many seconds.
SCHEDULER_SILENCE_SECONDS = 5 * 60

# PostgreSQL 15 cannot subtract infinite timestamps: a tier never refreshed has no lag (NULL).
_LAG_SQL = """
SELECT tier, CASE WHEN isfinite(watermark) THEN extract(epoch FROM now() - watermark) END
FROM ts_tier WHERE tier <> 'raw'
"""
_SCHEDULER_SQL = """
SELECT extract(epoch FROM now() - max(last_finish)) FROM ts_job
"""


def check_health() -> dict[str, Any]:
    problems: list[str] = []
    report: dict[str, Any] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute(_LAG_SQL)
            lags = {tier: (None if lag is None else float(lag)) for tier, lag in cursor.fetchall()}
            cursor.execute("SELECT to_regclass('ts_job') IS NOT NULL")
            row = cursor.fetchone()
            silence = None
            if row and row[0]:
                cursor.execute(_SCHEDULER_SQL)
                value = cursor.fetchone()
                silence = None if value is None or value[0] is None else float(value[0])
    except Exception as exc:  # noqa: BLE001 - any failure to reach the database is the answer
        return {"status": "error", "database": "unreachable", "problems": [str(exc).strip()]}
    report["database"] = "ok"
    report["lag_seconds"] = {
        t: (round(v, 1) if v is not None and v < 1e12 else None) for t, v in sorted(lags.items())
    }
    for tier, limit in MAX_LAG_SECONDS.items():
        lag = lags.get(tier)
        if lag is None or lag > limit:
            problems.append(f"tier {tier} is {_age(lag)} behind (limit {limit} s)")
    if settings.SCHEDULER_ENABLED:
        report["scheduler"] = (
            "ok" if silence is not None and silence < SCHEDULER_SILENCE_SECONDS else "silent"
        )
        if report["scheduler"] != "ok":
            problems.append(
                f"no job finished in the last {SCHEDULER_SILENCE_SECONDS} s: is the worker running?"
            )
    report["status"] = "ok" if not problems else "degraded"
    report["problems"] = problems
    return report


def _age(seconds: float | None) -> str:
    if seconds is None or seconds >= 1e12:
        return "never refreshed, infinitely"
    return f"{seconds:.0f} s"
