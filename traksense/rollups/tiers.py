"""The rollup tiers, declared once: bucket width, source tier and the seed's refresh policy.

The database holds the same facts in ts_tier (bucket_width, source_tier); this registry adds what
only the scheduler and the CLI need. Policy end lag equals the bucket width for every tier, which
is also the SQL default (ts_refresh_bounds) when no end is given.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True)
class Tier:
    name: str
    bucket_width: dt.timedelta
    source: str
    # Refresh policy (seed): every `schedule`, over [now - lookback, now - end_lag].
    schedule: dt.timedelta
    lookback: dt.timedelta
    end_lag: dt.timedelta

    def policy_window(self, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
        """The seed's policy window at `now`. Refresh itself processes every pending
        invalidation below the end (see docs/rollups.md); the start is informative."""
        return now - self.lookback, now - self.end_lag


TIERS: dict[str, Tier] = {
    "1m": Tier(
        name="1m",
        bucket_width=dt.timedelta(minutes=1),
        source="raw",
        schedule=dt.timedelta(minutes=1),
        lookback=dt.timedelta(days=14),
        end_lag=dt.timedelta(minutes=1),
    ),
    "5m": Tier(
        name="5m",
        bucket_width=dt.timedelta(minutes=5),
        source="1m",
        schedule=dt.timedelta(minutes=5),
        lookback=dt.timedelta(days=90),
        end_lag=dt.timedelta(minutes=5),
    ),
    "1h": Tier(
        name="1h",
        bucket_width=dt.timedelta(hours=1),
        source="5m",
        schedule=dt.timedelta(hours=1),
        lookback=dt.timedelta(days=1095),
        end_lag=dt.timedelta(hours=1),
    ),
}

# Refresh order: a tier reads its source's materialized rows, so finer tiers go first.
TIER_ORDER = ("1m", "5m", "1h")


def get_tier(name: str) -> Tier:
    try:
        return TIERS[name]
    except KeyError:
        raise ValueError(
            f"unknown rollup tier {name!r}; expected one of {', '.join(TIERS)}"
        ) from None
