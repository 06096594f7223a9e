"""An MQTT message (topic + payload) → a validated Batch, or an ApiError naming what is wrong.

Topic `ts/{tenant_id}/{device_id}/up`; payload `{"ts", "values": {point_id: value}}` or a JSON
array of such readings (DESIGN §8). The rules for ids, timestamps and values are those of
POST /data/points and live in traksense/ingest/parse.py: the readings are turned into that
module's samples and validated by its fast path; only when it says "look closer" are they
checked reading by reading, by the same rule functions, to name the first problem. Pure: no
database, no broker.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

import orjson

from traksense.core.errors import ApiError, bad_request
from traksense.ingest.parse import (
    Batch,
    accepted_range,
    check_id,
    check_ts,
    check_value,
    fast_batch,
    fast_columns,
    too_many,
)

READING_KEYS = frozenset(("ts", "values"))


class Topic(NamedTuple):
    tenant_id: str
    device_id: str


def parse_topic(topic: str) -> Topic:
    """The tenant and device of an uplink topic `ts/{tenant}/{device}/up`; ApiError otherwise.
    (The broker's ACLs decide who may publish there; this only reads what the topic says.)"""
    parts = topic.split("/")
    if len(parts) != 4 or parts[0] != "ts" or parts[3] != "up":
        raise bad_request(f"topic {topic!r} is not ts/{{tenant_id}}/{{device_id}}/up", "bad_topic")
    check_id("topic tenant_id", parts[1])
    check_id("topic device_id", parts[2])
    return Topic(parts[1].lower(), parts[2])


def parse_payload(
    device_id: str, payload: bytes, now: datetime, max_bytes: int, max_samples: int
) -> Batch:
    """Validate one message's payload for `device_id`; raise ApiError (code invalid_json,
    bad_request, payload_too_large or batch_too_large) naming the first problem."""
    if len(payload) > max_bytes:
        raise ApiError(
            413,
            "payload_too_large",
            f"payload of {len(payload)} bytes; at most {max_bytes} are accepted",
        )
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"payload is not valid JSON: {exc}", "invalid_json") from None
    if type(doc) is dict:
        readings, many = [doc], False
    elif type(doc) is list:
        readings, many = doc, True
        if not readings:
            raise bad_request("payload is an empty array")
    else:
        raise bad_request(
            'payload must be a JSON object {"ts": ..., "values": {...}} or an array of them'
        )
    samples: list[dict[str, Any]] = []
    for i, reading in enumerate(readings):
        _check_shape(_label(i, many), reading)
        ts = reading["ts"]
        samples.extend(
            {"device_id": device_id, "point_id": point, "ts": ts, "value": value}
            for point, value in reading["values"].items()
        )
    if len(samples) > max_samples:
        raise too_many(len(samples), max_samples, "message")
    lo, hi = accepted_range(now)
    batch = fast_batch(samples, lo, hi)
    if batch is not None:
        return batch
    for i, reading in enumerate(readings):
        where = _label(i, many)
        check_ts(f"{where}.ts", reading["ts"], lo, hi)
        for point, value in reading["values"].items():
            check_id(f"{where}.values: point id {point!r}", point)
            check_value(f"{where}.values[{point!r}]", value)
    raise bad_request("invalid payload")  # the checks above always raise first


def parse_together(
    messages: list[tuple[str, bytes]], now: datetime, max_bytes: int, max_samples: int
) -> Batch | None:
    """One Batch of many messages, each a (device_id, payload), validated together by parse.py's
    whole-array checks: a few microseconds a message, where parse_payload one by one costs ~30
    (the consumer's budget at 20,000 messages/s is 50 in all). None when any message is not
    valid: then parse_payload, message by message, says which and why."""
    devices: list[str] = []
    points: list[Any] = []
    stamps: list[Any] = []
    values: list[Any] = []
    for device_id, payload in messages:
        if len(payload) > max_bytes:
            return None
        try:
            doc = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return None
        readings = doc if type(doc) is list else (doc,)
        n = 0
        for reading in readings:
            # Exactly the keys ts and values, values a non-empty object: the rest is columns.
            if type(reading) is not dict or len(reading) != 2 or "ts" not in reading:
                return None
            these = reading.get("values")
            if type(these) is not dict or not these:
                return None
            points += these.keys()
            values += these.values()
            stamps += [reading["ts"]] * len(these)
            n += len(these)
        if n == 0 or n > max_samples:
            return None
        devices += [device_id] * n
    lo, hi = accepted_range(now)
    return fast_columns(devices, points, stamps, values, lo, hi)


def _label(i: int, many: bool) -> str:
    return f"payload[{i}]" if many else "payload"


def _check_shape(where: str, reading: Any) -> None:
    if type(reading) is not dict:
        raise bad_request(f'{where}: must be an object {{"ts": ..., "values": {{...}}}}')
    unknown = sorted(set(reading) - READING_KEYS)
    if unknown:
        raise bad_request(f"{where}: unknown key(s) {', '.join(unknown)}")
    missing = sorted(READING_KEYS - set(reading))
    if missing:
        raise bad_request(f"{where}: missing key(s) {', '.join(missing)}")
    values = reading["values"]
    if type(values) is not dict:
        raise bad_request(f'{where}.values: must be an object {{"<point_id>": value, ...}}')
    if not values:
        raise bad_request(f"{where}.values: is empty")


def concat(batches: list[Batch]) -> Batch:
    """One Batch of many messages' (one ts_ingest call for a tenant's share of a poll)."""
    if len(batches) == 1:
        return batches[0]
    devices: list[str] = []
    points: list[str] = []
    ts: list[datetime] = []
    for b in batches:
        devices += b.devices
        points += b.points
        ts += b.ts
    return Batch(
        devices,
        points,
        ts,
        _column([(b.num, len(b)) for b in batches]),
        _column([(b.bools, len(b)) for b in batches]),
        _column([(b.texts, len(b)) for b in batches]),
    )


def _column(parts: list[tuple[list[Any] | None, int]]) -> list[Any] | None:
    """Concatenate one value column; a batch without that kind contributes NULLs, and a column
    no batch has stays None (the cheap case ts_ingest expects)."""
    if all(values is None for values, _ in parts):
        return None
    out: list[Any] = []
    for values, n in parts:
        out += values if values is not None else [None] * n
    return out
