"""Validate a POST /data/points body into parallel arrays, one element per sample. Pure: no DB.

This is the hot path of ingest (a 10,000-sample batch should cost a few milliseconds), so the
checks are whole-array operations that run in C (comprehensions, `set(map(...))`, `min`/`max`)
rather than a Python loop with a function call per field. When any of them fails, the batch is
re-checked sample by sample by `_explain`, which is slow but names the first bad sample and
field ("samples[3].ts: timestamp has no UTC offset"). Both paths check the same rules; the
fast path only ever says "valid" or "look closer".

Values: a JSON number is a numeric sample, `true`/`false` a boolean one, a string a text one.
orjson already refuses NaN and Infinity literals and numbers that overflow a double (answered as
"body is not valid JSON"), and turns integers beyond 64 bits into floats, so every number that
reaches us is finite and fits a float8. A number must also be 0 or of a magnitude between
MIN_MAGNITUDE and MAX_MAGNITUDE: the rollups add and divide samples in float8, and PostgreSQL
raises an error where a sum overflows (two samples of 1.7e308 in one minute) or an average
underflows to zero (5e-324 / 2), which would fail every read of that bucket and stop the
refresh of the whole tier, every tenant's, at it. No instrument reports such values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from django.conf import settings

from traksense.core.errors import ApiError, bad_request

SAMPLE_KEYS = frozenset(("device_id", "point_id", "ts", "value"))
MAX_TEXT_CHARS = 4096
MAX_MAGNITUDE = 1e300  # a sum of 10^8 samples of this size still fits a float8
MIN_MAGNITUDE = 1e-300  # (sums of such samples never underflow an average to zero)
MAX_FUTURE = timedelta(days=1)
MAX_AGE = timedelta(days=1825)

# Canonical hyphenated form only: PostgreSQL's uuid input accepts it in any case, and unlike
# uuid.UUID() this refuses "urn:uuid:..." forms that PostgreSQL would reject with a 500.
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_fromisoformat = datetime.fromisoformat


@dataclass(frozen=True, slots=True)
class Batch:
    """Parallel arrays of a validated batch. Exactly one of num[i], bools[i], texts[i] is set;
    an array is None when no sample of the batch has that kind (the common, cheap case)."""

    devices: list[str]
    points: list[str]
    ts: list[datetime]
    num: list[float | None] | None
    bools: list[bool | None] | None
    texts: list[str | None] | None

    def __len__(self) -> int:
        return len(self.ts)


class _LookCloser(Exception):
    """The fast path found something wrong; _explain() says what and where."""


def parse_batch(body: bytes, now: datetime, max_samples: int | None = None) -> Batch:
    """Validate `body` (the raw request body) against `now` (an aware datetime); raise ApiError
    (400, or 413 for too many samples) naming the first problem."""
    if max_samples is None:
        max_samples = settings.INGEST_MAX_SAMPLES
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"body is not valid JSON: {exc}", "invalid_json") from None
    if type(doc) is not dict:
        raise bad_request('body must be a JSON object {"samples": [...]}')
    if set(doc) != {"samples"}:
        extra = sorted(set(doc) - {"samples"})
        if extra:
            raise bad_request(f"unknown key(s) in body: {', '.join(extra)}")
        raise bad_request('body has no "samples" list')
    samples = doc["samples"]
    if type(samples) is not list:
        raise bad_request('"samples" must be a list')
    if not samples:
        raise bad_request('"samples" is empty')
    if len(samples) > max_samples:
        raise too_many(len(samples), max_samples, "batch")
    lo, hi = accepted_range(now)
    batch = fast_batch(samples, lo, hi)
    if batch is not None:
        return batch
    _explain(samples, lo, hi)
    raise bad_request("invalid samples")  # _explain always raises first; this is a safety net


def too_many(n: int, limit: int, where: str) -> ApiError:
    """The 413 of a batch (or an MQTT message) holding more than `limit` samples."""
    return ApiError(
        413, "batch_too_large", f"{n} samples in one {where}; at most {limit} are accepted"
    )


def accepted_range(now: datetime) -> tuple[datetime, datetime]:
    """The oldest and newest timestamps a sample received at `now` may carry."""
    return now - MAX_AGE, now + MAX_FUTURE


def fast_batch(samples: list[Any], lo: datetime, hi: datetime) -> Batch | None:
    """The Batch of `samples` (dicts with exactly device_id, point_id, ts, value) when every one
    is valid, else None: then check_ts/check_value, sample by sample, say what is wrong."""
    try:
        if set(map(type, samples)) != {dict} or set(map(len, samples)) != {4}:
            return None
        # Four required keys and four keys in all: exactly the allowed ones (KeyError otherwise).
        devices = [s["device_id"] for s in samples]
        points = [s["point_id"] for s in samples]
        stamps = [s["ts"] for s in samples]
        values = [s["value"] for s in samples]
    except KeyError:
        return None
    return fast_columns(devices, points, stamps, values, lo, hi)


def fast_columns(
    devices: list[Any],
    points: list[Any],
    stamps: list[Any],
    values: list[Any],
    lo: datetime,
    hi: datetime,
) -> Batch | None:
    """fast_batch of samples already split into parallel columns (the MQTT consumer builds them
    from a whole batch of messages at once), or None when any of them is not valid."""
    try:
        # Each distinct id is checked once; set() raises TypeError on a list/dict id.
        for ident in set(devices) | set(points):
            if type(ident) is not str or not _UUID.fullmatch(ident):
                raise _LookCloser
        distinct = set(stamps)  # TypeError on a list/dict
        if set(map(type, distinct)) != {str}:
            raise _LookCloser
        # Each distinct timestamp parsed once: a fleet's poll cycle puts one on many samples.
        parsed = {raw: _fromisoformat(raw) for raw in distinct}  # ValueError on a malformed one
        ts = list(map(parsed.__getitem__, stamps))
        # Naive datetimes do not compare with aware `lo`/`hi`: TypeError here.
        if min(parsed.values()) < lo or max(parsed.values()) > hi:
            raise _LookCloser

        kinds = set(map(type, values))
        num: list[float | None] | None = None
        bools: list[bool | None] | None = None
        texts: list[str | None] | None = None
        if kinds == {float}:
            num = values
            _check_magnitudes(num)
        elif kinds <= {float, int}:
            # psycopg dumps a list by the type of its elements: make them all floats.
            num = list(map(float, values))
            _check_magnitudes(num)
        elif kinds == {bool}:
            bools = values
        elif kinds == {str}:
            if max(map(len, values)) > MAX_TEXT_CHARS:
                raise _LookCloser
            texts = values
        elif kinds <= {float, int, bool, str}:
            num, bools, texts = _split_kinds(values)
            if num is not None:
                _check_magnitudes([v for v in num if v is not None])
        else:
            raise _LookCloser
        return Batch(devices, points, ts, num, bools, texts)
    except (_LookCloser, KeyError, TypeError, ValueError, OverflowError):
        return None


def _check_magnitudes(num: list[Any]) -> None:
    """Every value 0 or within [MIN_MAGNITUDE, MAX_MAGNITUDE] in magnitude: `min`/`max` in C,
    and a closer look only when a zero or a tiny value is among them."""
    magnitudes = list(map(abs, num))
    if max(magnitudes) > MAX_MAGNITUDE:
        raise _LookCloser
    if (
        min(magnitudes) < MIN_MAGNITUDE
        and min(filter(None, magnitudes), default=1.0) < MIN_MAGNITUDE
    ):
        raise _LookCloser


def _split_kinds(
    values: list[Any],
) -> tuple[list[float | None] | None, list[bool | None] | None, list[str | None] | None]:
    """A batch mixing kinds (different points of different kinds): one array per kind."""
    n = len(values)
    num: list[float | None] = [None] * n
    bools: list[bool | None] = [None] * n
    texts: list[str | None] = [None] * n
    has_num = has_bool = has_text = False
    for i, v in enumerate(values):
        t = type(v)
        if t is bool:  # before int: bool is a subclass of int
            bools[i] = v
            has_bool = True
        elif t is float or t is int:
            num[i] = float(v)
            has_num = True
        elif len(v) > MAX_TEXT_CHARS:
            raise _LookCloser
        else:
            texts[i] = v
            has_text = True
    return (num if has_num else None, bools if has_bool else None, texts if has_text else None)


def _explain(samples: list[Any], lo: datetime, hi: datetime) -> None:
    """Check sample by sample and raise a 400 naming the first bad sample and field."""
    good_ids: set[str] = set()
    for i, s in enumerate(samples):
        where = f"samples[{i}]"
        if type(s) is not dict:
            raise bad_request(f"{where}: must be an object with device_id, point_id, ts, value")
        unknown = sorted(set(s) - SAMPLE_KEYS)
        if unknown:
            raise bad_request(f"{where}: unknown key(s) {', '.join(unknown)}")
        missing = sorted(SAMPLE_KEYS - set(s))
        if missing:
            raise bad_request(f"{where}: missing key(s) {', '.join(missing)}")
        for field in ("device_id", "point_id"):
            ident = s[field]
            if type(ident) is str and ident in good_ids:
                continue
            check_id(f"{where}.{field}", ident)
            good_ids.add(ident)
        check_ts(f"{where}.ts", s["ts"], lo, hi)
        check_value(f"{where}.value", s["value"])


def check_id(where: str, ident: Any) -> None:
    """Raise a 400 naming `where` unless `ident` is a UUID string in canonical form."""
    if type(ident) is not str or not _UUID.fullmatch(ident):
        raise bad_request(
            f"{where}: must be a UUID string like "
            f"'123e4567-e89b-12d3-a456-426614174000', got {_show(ident)}"
        )


def check_ts(where: str, raw: Any, lo: datetime, hi: datetime) -> None:
    """Raise a 400 naming `where` unless `raw` is an ISO-8601 string with an offset in
    [lo, hi]."""
    if type(raw) is not str:
        raise bad_request(f"{where}: must be an ISO-8601 string, got {_show(raw)}")
    try:
        ts = _fromisoformat(raw)
    except ValueError:
        raise bad_request(f"{where}: not an ISO-8601 timestamp: {_show(raw)}") from None
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise bad_request(
            f"{where}: timestamp has no UTC offset (add 'Z' or '+00:00'): {_show(raw)}"
        )
    if ts > hi:
        raise bad_request(f"{where}: more than {MAX_FUTURE.days} day in the future: {raw}")
    if ts < lo:
        raise bad_request(f"{where}: older than {MAX_AGE.days} days: {raw}")


def check_value(where: str, v: Any) -> None:
    """Raise a 400 naming `where` unless `v` is a storable number, boolean or string."""
    t = type(v)
    if t is bool:
        return
    if t is float or t is int:
        try:
            magnitude = abs(float(v))
        except OverflowError:
            raise bad_request(f"{where}: integer out of the float8 range") from None
        if magnitude > MAX_MAGNITUDE or 0 < magnitude < MIN_MAGNITUDE:
            raise bad_request(
                f"{where}: {v!r} is out of range: a number must be 0 or of a magnitude"
                f" between {MIN_MAGNITUDE:g} and {MAX_MAGNITUDE:g}"
            )
        return
    if t is str:
        if len(v) > MAX_TEXT_CHARS:
            raise bad_request(
                f"{where}: text of {len(v)} characters; at most {MAX_TEXT_CHARS} allowed"
            )
        return
    if v is None:
        raise bad_request(f"{where}: must not be null")
    raise bad_request(f"{where}: must be a number, boolean or string, got {_show(v)}")


def _show(v: Any) -> str:
    """A short rendering of a bad value for an error message."""
    text = v if type(v) is str else orjson.dumps(v).decode()
    return repr(text[:60] + "…") if len(text) > 60 else repr(text)
