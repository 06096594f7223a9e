"""From a GET /data/points query string to a plan: which tier answers, and why.

Pure: no database, no clock (the caller passes `now`), no settings reads beyond what the caller
hands in. Everything here is unit-tested without PostgreSQL.

Rules (DESIGN §7, issue 4):
- `agg` names the tier asked for (raw, 1m, 5m, 1h) or `auto`: the finest tier whose bucket count
  over [start, end) fits `max_points` (what a chart can draw).
- A tier "covers" `start` while start >= now - retention(tier). When the asked tier no longer
  covers it, the answer comes from the next coarser tier that does, whole: one answer, one tier.
- Boolean and text points have state rollups in every tier (first, last, changes, n, time in
  each state), routed and degraded like numeric ones. (Until issue 19 they had none, and their
  `agg` other than raw was a 400: the seed's rule, from TimescaleDB's continuous aggregates,
  which aggregate one numeric column only.) Calendar buckets sum them too.
- Calendar buckets (`1d`, `1w`, `1mo`, in `tz`) are summed from the coarsest rollup tier whose
  buckets the zone's local midnights fall on (1h for whole-hour offsets, 5m for +05:30 or
  +05:45, else 1m) and which covers `start`; when none covers it, from 1h, whose buckets then
  count in the local day they start in (an approximation the answer says, as a degradation).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
import struct
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from traksense.core.errors import bad_request

TIERS: tuple[str, ...] = ("raw", "1m", "5m", "1h")
BUCKET_SECONDS: Mapping[str, int] = {"1m": 60, "5m": 300, "1h": 3600}
# Calendar aggs and their date_trunc unit.
CALENDAR: Mapping[str, str] = {"1d": "day", "1w": "week", "1mo": "month"}
AGGS: tuple[str, ...] = (*TIERS, "auto", *CALENDAR)
MAX_TZ_LENGTH = 64

MAX_LIMIT = 100_000
DEFAULT_MAX_POINTS = 1_000

KNOWN_PARAMS = frozenset(
    {
        "device_id",
        "point_id",
        "start",
        "end",
        "agg",
        "materialized_only",
        "limit",
        "cursor",
        "format",
        "max_points",
        "tz",
    }
)
FORMATS = ("json", "csv")
NUMERIC = "numeric"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class PointsQuery:
    """A validated GET /data/points query string."""

    device_id: uuid.UUID
    point_id: uuid.UUID
    start: datetime  # UTC, inclusive
    end: datetime  # UTC, exclusive
    agg: str  # as asked: a tier or "auto"
    materialized_only: bool
    limit: int
    max_points: int
    format: str  # "json" or "csv"
    cursor: str | None  # still opaque: decoded once the series is known
    tz: str | None = None  # calendar aggs only; None: the tenant's zone, else UTC

    @property
    def calendar(self) -> bool:
        return self.agg in CALENDAR


@dataclass(frozen=True)
class Plan:
    """The tier that answers, and when it is not the one asked for, why. A calendar answer
    (`tier` 1d, 1w or 1mo) is summed from the rollup tier `source` in the zone `tz`."""

    tier: str
    degraded_from: str | None = None
    degraded_to: str | None = None
    reason: str | None = None
    source: str | None = None
    tz: str | None = None

    @property
    def degraded(self) -> bool:
        return self.degraded_from is not None

    @property
    def read_tier(self) -> str:
        """The tier whose rows are read: `source` for calendar buckets, else `tier`."""
        return self.source or self.tier


@dataclass(frozen=True)
class Cursor:
    """Where the previous page stopped: the tier it was read from and its last ts."""

    tier: str
    after: datetime


# -- parsing ---------------------------------------------------------------------------------


def _one(params: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = params.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise bad_request(f"'{name}' is given {len(values)} times; give it once")
    return values[0]


def _required(params: Mapping[str, Sequence[str]], name: str) -> str:
    value = _one(params, name)
    if value is None or not value.strip():
        raise bad_request(f"'{name}' is required")
    return value.strip()


def parse_uuid(value: str, name: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise bad_request(f"'{name}' must be a UUID, got {value!r}") from None


# "…T12:00:00 02:00": a '+' of the offset sent unencoded in a URL arrives as a space.
_UNENCODED_PLUS = re.compile(r"(\d{4}-\d{2}-\d{2}T[0-9:.]+) (\d{2}(?::?\d{2})?)")


def parse_instant(value: str, name: str) -> datetime:
    """An ISO-8601 / RFC 3339 timestamp with an explicit offset, as UTC."""
    unencoded = _UNENCODED_PLUS.fullmatch(value)
    if unencoded:
        value = f"{unencoded[1]}+{unencoded[2]}"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise bad_request(
            f"'{name}' must be an ISO-8601 timestamp with an offset, "
            f"e.g. 2025-01-01T00:00:00Z; got {value!r}"
        ) from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise bad_request(
            f"'{name}' has no UTC offset: add 'Z' or '+00:00' (got {value!r}); "
            "a timestamp without an offset is ambiguous"
        )
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise bad_request(f"'{name}' is out of range: {value!r}") from None


def _positive_int(raw: str | None, name: str, default: int, maximum: int) -> int:
    if raw is None:
        return default
    text = raw.strip()
    # int() accepts "1_000" and " 7": only plain decimal digits are a limit here.
    if not text.isascii() or not text.isdigit():
        raise bad_request(f"'{name}' must be an integer from 1 to {maximum}, got {raw!r}")
    value = int(text)
    if not 1 <= value <= maximum:
        raise bad_request(f"'{name}' must be an integer from 1 to {maximum}, got {raw!r}")
    return value


def _bool(raw: str | None, name: str) -> bool:
    if raw is None:
        return False
    lowered = raw.strip().lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise bad_request(f"'{name}' must be true or false, got {raw!r}")


def wants_csv(format_param: str | None, accept: str) -> str:
    """`format` wins; without it, an Accept header naming text/csv asks for CSV."""
    if format_param is not None:
        fmt = format_param.strip().lower()
        if fmt not in FORMATS:
            raise bad_request(f"'format' must be json or csv, got {format_param!r}")
        return fmt
    media = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    return "csv" if "text/csv" in media else "json"


def parse_query(params: Mapping[str, Sequence[str]], accept: str = "") -> PointsQuery:
    """Validate a query string (name -> list of values); raise a 400 ApiError on bad input."""
    unknown = sorted(set(params) - KNOWN_PARAMS)
    if unknown:
        raise bad_request(
            f"unknown parameter(s) {', '.join(repr(u) for u in unknown)}; "
            f"known: {', '.join(sorted(KNOWN_PARAMS))}"
        )
    device_id = parse_uuid(_required(params, "device_id"), "device_id")
    point_id = parse_uuid(_required(params, "point_id"), "point_id")
    start = parse_instant(_required(params, "start"), "start")
    end = parse_instant(_required(params, "end"), "end")
    if start >= end:
        raise bad_request(
            f"'start' must be before 'end' (start is inclusive, end exclusive); "
            f"got start={isoformat(start)} end={isoformat(end)}"
        )
    agg = (_one(params, "agg") or "raw").strip()
    if agg not in AGGS:
        raise bad_request(f"'agg' must be one of {', '.join(AGGS)}; got {agg!r}")
    cursor = _one(params, "cursor")
    if cursor is not None and not cursor.strip():
        raise bad_request("'cursor' is empty: pass the one from 'next', or none")
    tz = _one(params, "tz")
    if tz is not None:
        tz = tz.strip()
        if agg not in CALENDAR:
            raise bad_request(
                f"'tz' applies to calendar buckets only (agg={'|'.join(CALENDAR)}); "
                f"agg={agg} buckets are aligned to UTC"
            )
        if not tz or len(tz) > MAX_TZ_LENGTH:
            raise bad_request(f"'tz' must be an IANA time zone such as Europe/Berlin, got {tz!r}")
    return PointsQuery(
        device_id=device_id,
        point_id=point_id,
        start=start,
        end=end,
        agg=agg,
        materialized_only=_bool(_one(params, "materialized_only"), "materialized_only"),
        limit=_positive_int(_one(params, "limit"), "limit", MAX_LIMIT, MAX_LIMIT),
        max_points=_positive_int(
            _one(params, "max_points"), "max_points", DEFAULT_MAX_POINTS, MAX_LIMIT
        ),
        format=wants_csv(_one(params, "format"), accept),
        cursor=cursor.strip() if cursor is not None else None,
        tz=tz,
    )


def isoformat(instant: datetime) -> str:
    """RFC 3339 in UTC with '+00:00', the form PostgreSQL's to_json gives timestamptz in UTC."""
    return instant.astimezone(UTC).isoformat()


# -- tier choice -----------------------------------------------------------------------------


def covers(tier: str, start: datetime, now: datetime, retention_days: Mapping[str, int]) -> bool:
    """Whether `tier` still holds data at `start` (a retention of 0 days keeps it forever)."""
    days = retention_days[tier]
    return days <= 0 or start >= now - timedelta(days=days)


def bucket_count(tier: str, start: datetime, end: datetime) -> int:
    """Buckets of `tier` that [start, end) touches (aligned to UTC like date_bin)."""
    width = BUCKET_SECONDS[tier]
    first = math.floor((start - _EPOCH).total_seconds() / width)
    last = math.ceil((end - _EPOCH).total_seconds() / width)
    return last - first


def _age(start: datetime, now: datetime) -> str:
    delta = now - start
    days = delta.days
    if days >= 2:
        return f"{days} days ago"
    hours = int(delta.total_seconds() // 3600)
    return f"{hours} hours ago"


def _kept(tier: str, retention_days: Mapping[str, int]) -> str:
    name = "raw data" if tier == "raw" else f"the {tier} tier"
    return f"{name} is kept {retention_days[tier]} days"


def plan(
    query: PointsQuery,
    now: datetime,
    retention_days: Mapping[str, int],
    pinned_tier: str | None = None,
) -> Plan:
    """Choose the tier that answers `query` (for a point of any kind).

    `pinned_tier` is the tier a cursor was issued for: later pages of one answer come from the
    tier of its first page even if the clock moved `start` past a retention boundary meanwhile.
    """
    if query.agg == "auto":
        return Plan(pinned_tier or auto_tier(query, now, retention_days))

    asked = query.agg
    if pinned_tier is not None:
        tier = pinned_tier
    elif covers(asked, query.start, now, retention_days):
        return Plan(asked)
    else:
        coarser = TIERS[TIERS.index(asked) + 1 :]
        tier = next(
            (t for t in coarser if covers(t, query.start, now, retention_days)),
            coarser[-1] if coarser else asked,
        )
    if tier == asked:
        return Plan(asked)
    reason = f"{_kept(asked, retention_days)}; start is {_age(query.start, now)}"
    if not covers(tier, query.start, now, retention_days):
        reason += f"; no tier reaches that far, answering from the coarsest ({tier})"
    else:
        reason += f"; answering from {tier}"
    return Plan(tier, degraded_from=asked, degraded_to=tier, reason=reason)


ROLLUPS_COARSEST_FIRST = ("1h", "5m", "1m")


def calendar_plan(
    query: PointsQuery,
    tz: str,
    aligned_seconds: int,
    now: datetime,
    retention_days: Mapping[str, int],
    pinned_tier: str | None = None,
) -> Plan:
    """The rollup tier calendar buckets of `query` are summed from (numeric or state rows), in
    zone `tz` whose local midnights over the window fall on multiples of `aligned_seconds`
    (ts_calendar_zone, 68_calendar.sql; 0: on no tier's buckets)."""
    if pinned_tier is not None:
        return Plan(query.agg, source=pinned_tier, tz=tz)
    exact = [t for t in ROLLUPS_COARSEST_FIRST if 0 < BUCKET_SECONDS[t] <= aligned_seconds]
    for tier in exact:
        if covers(tier, query.start, now, retention_days):
            return Plan(query.agg, source=tier, tz=tz)
    coarsest = ROLLUPS_COARSEST_FIRST[0]
    if exact and exact[0] == coarsest:
        # Beyond every tier (older than 1h's retention): answered from 1h like agg=1h would be.
        return Plan(query.agg, source=coarsest, tz=tz)
    if exact:
        best = exact[0]
        reason = (
            f"{tz}'s local midnights fall on the buckets of {best}, and "
            f"{_kept(best, retention_days)}; start is {_age(query.start, now)}"
        )
    else:
        best = ROLLUPS_COARSEST_FIRST[-1]
        reason = f"{tz}'s local midnights fall on no tier's buckets over this window"
    unit = CALENDAR[query.agg]
    reason += f"; answering from {coarsest}, each hour counted in the local {unit} it starts in"
    if not covers(coarsest, query.start, now, retention_days):
        reason += f" ({_kept(coarsest, retention_days)}: older data is gone)"
    return Plan(
        query.agg, degraded_from=best, degraded_to=coarsest, reason=reason, source=coarsest, tz=tz
    )


def auto_tier(query: PointsQuery, now: datetime, retention_days: Mapping[str, int]) -> str:
    """The finest rollup tier that covers `start` and draws at most `max_points` buckets; the
    coarsest tier when none does."""
    rollups = TIERS[1:]
    for tier in rollups:
        if not covers(tier, query.start, now, retention_days):
            continue
        if bucket_count(tier, query.start, query.end) <= query.max_points:
            return tier
    return rollups[-1]


# -- cursors ---------------------------------------------------------------------------------
#
# A cursor is urlsafe base64 (no padding) of: version byte, tier index byte, last ts in
# microseconds since the epoch (big-endian int64), then 12 bytes of HMAC-SHA256 over those bytes
# and the query's identity (series and asked agg). The keyset is `ts > last`: rows arriving later
# in time still show on later pages, and none shows twice. The MAC turns a garbled or forged
# cursor, or one taken from another query, into a 400 instead of a silent wrong page.

_CURSOR_VERSION = 1
_CURSOR = struct.Struct(">BBq")
_MAC_BYTES = 12


def _mac(secret: str, body: bytes, query: PointsQuery) -> bytes:
    identity = f"{query.device_id}|{query.point_id}|{query.agg}".encode()
    if query.tz is not None:
        identity += f"|{query.tz}".encode()
    return hmac.new(secret.encode(), body + identity, hashlib.sha256).digest()[:_MAC_BYTES]


def encode_cursor(cursor: Cursor, query: PointsQuery, secret: str) -> str:
    delta = cursor.after - _EPOCH
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    body = _CURSOR.pack(_CURSOR_VERSION, TIERS.index(cursor.tier), micros)
    return base64.urlsafe_b64encode(body + _mac(secret, body, query)).rstrip(b"=").decode()


def decode_cursor(token: str, query: PointsQuery, secret: str) -> Cursor:
    invalid = bad_request(
        "'cursor' is not valid for this query: pass the 'next' URL unchanged", code="bad_cursor"
    )
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (ValueError, TypeError):
        raise invalid from None
    if len(raw) != _CURSOR.size + _MAC_BYTES:
        raise invalid
    body, mac = raw[: _CURSOR.size], raw[_CURSOR.size :]
    if not hmac.compare_digest(mac, _mac(secret, body, query)):
        raise invalid
    version, tier_index, micros = _CURSOR.unpack(body)
    if version != _CURSOR_VERSION or tier_index >= len(TIERS):
        raise invalid
    try:
        after = _EPOCH + timedelta(microseconds=micros)
    except OverflowError:
        raise invalid from None
    return Cursor(tier=TIERS[tier_index], after=after)
