"""MQTT payloads and topics → Batch, or the error the device gets back. Pure: no broker, no DB."""

from __future__ import annotations

import datetime as dt
import uuid

import orjson
import pytest

from traksense.core.errors import ApiError
from traksense.ingest.parse import Batch
from traksense.mqtt.payload import concat, parse_payload, parse_together, parse_topic

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
DEV = str(uuid.uuid4())
P1, P2 = str(uuid.uuid4()), str(uuid.uuid4())


def parse(doc: object) -> Batch:
    body = doc if isinstance(doc, bytes) else orjson.dumps(doc)
    return parse_payload(DEV, body, NOW, max_bytes=4096, max_samples=10)


def refused(doc: object) -> ApiError:
    with pytest.raises(ApiError) as err:
        parse(doc)
    return err.value


def test_one_reading_of_many_points() -> None:
    batch = parse({"ts": "2026-12-07T11:59:00-03:00", "values": {P1: 21.5, P2: True}})
    assert batch.devices == [DEV, DEV]
    assert batch.points == [P1, P2]
    assert batch.ts == [dt.datetime(2026, 12, 7, 14, 59, tzinfo=dt.UTC)] * 2
    assert batch.num == [21.5, None] and batch.bools == [None, True]


def test_an_array_of_buffered_readings() -> None:
    batch = parse(
        [
            {"ts": "2026-12-07T11:00:00Z", "values": {P1: 1}},
            {"ts": "2026-12-07T11:01:00Z", "values": {P1: 2, P2: "heat"}},
        ]
    )
    assert len(batch) == 3
    assert batch.num == [1.0, 2.0, None] and batch.texts == [None, None, "heat"]


@pytest.mark.parametrize(
    ("doc", "code", "words"),
    [
        (b"{not json", "invalid_json", "not valid JSON"),
        ([], "bad_request", "empty array"),
        (42, "bad_request", "JSON object"),
        ({"ts": "2026-12-07T11:00:00Z"}, "bad_request", "missing key(s) values"),
        ({"ts": "2026-12-07T11:00:00Z", "values": {}, "x": 1}, "bad_request", "unknown key"),
        ({"ts": "2026-12-07T11:00:00Z", "values": {}}, "bad_request", "values: is empty"),
        ({"ts": "2026-12-07T11:00:00Z", "values": [1]}, "bad_request", "payload.values"),
        ({"ts": "2026-12-07T11:00:00", "values": {P1: 1}}, "bad_request", "no UTC offset"),
        ({"ts": "yesterday", "values": {P1: 1}}, "bad_request", "payload.ts"),
        ({"ts": "2026-12-09T11:00:00Z", "values": {P1: 1}}, "bad_request", "in the future"),
        ({"ts": "2026-12-07T11:00:00Z", "values": {P1: None}}, "bad_request", "not be null"),
        ({"ts": "2026-12-07T11:00:00Z", "values": {P1: [1]}}, "bad_request", "number, boolean"),
        ({"ts": "2026-12-07T11:00:00Z", "values": {"temp": 1}}, "bad_request", "'temp'"),
        ({"ts": "2026-12-07T11:00:00Z", "values": {P1: 1e308}}, "bad_request", "out of range"),
        (
            [{"ts": "2026-12-07T11:00:00Z", "values": {P1: 1}}, {"ts": 5, "values": {P1: 1}}],
            "bad_request",
            "payload[1].ts",
        ),
    ],
)
def test_a_bad_message_is_refused_whole_and_named(doc: object, code: str, words: str) -> None:
    error = refused(doc)
    assert error.code == code
    assert words in error.message


def test_too_many_samples_and_too_many_bytes() -> None:
    values = {str(uuid.uuid4()): 1.0 for _ in range(11)}
    assert refused({"ts": "2026-12-07T11:00:00Z", "values": values}).code == "batch_too_large"
    big = {"ts": "2026-12-07T11:00:00Z", "values": {P1: "x" * 5000}}
    assert refused(big).code == "payload_too_large"


def test_topics() -> None:
    tenant = str(uuid.uuid4())
    assert parse_topic(f"ts/{tenant}/{DEV}/up") == (tenant, DEV)
    for bad in (f"ts/{tenant}/{DEV}", f"ts/{tenant}/{DEV}/down", f"x/{tenant}/{DEV}/up"):
        assert pytest.raises(ApiError, parse_topic, bad).value.code == "bad_topic"
    assert "tenant_id" in pytest.raises(ApiError, parse_topic, f"ts/acme/{DEV}/up").value.message


def test_concat_pads_the_kinds_a_message_lacks() -> None:
    a = parse({"ts": "2026-12-07T11:00:00Z", "values": {P1: 1}})
    b = parse({"ts": "2026-12-07T11:00:00Z", "values": {P2: False}})
    both = concat([a, b])
    assert both.num == [1.0, None] and both.bools == [None, False] and both.texts is None
    assert both.points == [P1, P2]


GOOD: list[tuple[str, object]] = [
    (DEV, {"ts": "2026-12-07T11:59:00-03:00", "values": {P1: 21.5, P2: True}}),
    (str(uuid.uuid4()), [{"ts": "2026-12-07T10:00:00Z", "values": {P1: 3}}]),
    (
        DEV,
        [
            {"ts": "2026-12-07T10:01:00Z", "values": {P2: "on"}},
            {"ts": NOW.isoformat(), "values": {P1: 0}},
        ],
    ),
]


def together(messages: list[tuple[str, object]]) -> Batch | None:
    return parse_together(
        [(d, m if isinstance(m, bytes) else orjson.dumps(m)) for d, m in messages],
        NOW,
        max_bytes=4096,
        max_samples=10,
    )


def test_messages_validated_together_give_the_batch_of_each_on_its_own() -> None:
    one_by_one = concat([parse_payload(d, orjson.dumps(m), NOW, 4096, 10) for d, m in GOOD])
    assert together(GOOD) == one_by_one


@pytest.mark.parametrize(
    "bad",
    [
        b"{oops",
        b"42",
        b"[]",
        {"ts": "2026-12-07T10:00:00", "values": {P1: 1}},  # no offset
        {"ts": "2026-12-07T10:00:00Z", "values": {P1: [1, 2]}},
        {"ts": "2026-12-07T10:00:00Z", "values": {P1: None}},
        {"ts": "2026-12-07T10:00:00Z", "values": {"not-a-uuid": 1}},
        {"ts": "2026-12-07T10:00:00Z", "values": {}},
        {"ts": "2026-12-07T10:00:00Z", "values": {P1: 1}, "extra": 1},
        {"time": "2026-12-07T10:00:00Z", "values": {P1: 1}},
        {"ts": None, "values": {P1: 1}},
        {"ts": "2030-01-01T00:00:00Z", "values": {P1: 1}},  # too far in the future
        {"ts": "2026-12-07T10:00:00Z", "values": {P1: 1e-310}},
        [{"ts": "2026-12-07T10:00:00Z", "values": {P1: 1}}, "x"],
        [{"ts": "2026-12-07T10:00:00Z", "values": {str(uuid.uuid4()): i}} for i in range(11)],
        {"ts": "2026-12-07T10:00:00Z", "values": {P1: "x" * 5000}},  # over max_bytes
    ],
)
def test_one_bad_message_among_good_ones_sends_the_batch_one_by_one(bad: object) -> None:
    assert together([*GOOD, (DEV, bad)]) is None
    refused(bad)  # and on its own, it gets its error
