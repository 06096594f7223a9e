"""parse_batch is pure: these tests need no database."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from traksense.core.errors import ApiError
from traksense.ingest.parse import MAX_TEXT_CHARS, parse_batch

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DEV = "0b0e0e0e-0000-4000-8000-000000000001"
PT = "0b0e0e0e-0000-4000-8000-000000000002"
PT2 = "0b0e0e0e-0000-4000-8000-000000000003"


def sample(**over: Any) -> dict[str, Any]:
    s: dict[str, Any] = {
        "device_id": DEV,
        "point_id": PT,
        "ts": "2026-03-01T11:00:00Z",
        "value": 1.5,
    }
    s.update(over)
    return s


def body(*samples: Any) -> bytes:
    return orjson.dumps({"samples": list(samples)})


def rejected(raw: bytes, max_samples: int = 100) -> ApiError:
    with pytest.raises(ApiError) as info:
        parse_batch(raw, NOW, max_samples=max_samples)
    return info.value


def test_it_parses_a_numeric_batch_into_parallel_arrays() -> None:
    batch = parse_batch(
        body(sample(), sample(ts="2026-03-01T11:00:01+02:00", value=3)), NOW, max_samples=10
    )
    assert len(batch) == 2
    assert batch.devices == [DEV, DEV] and batch.points == [PT, PT]
    assert batch.ts == [
        datetime(2026, 3, 1, 11, 0, tzinfo=UTC),
        datetime(2026, 3, 1, 9, 0, 1, tzinfo=UTC),
    ]
    assert batch.num == [1.5, 3.0] and all(type(v) is float for v in batch.num)
    assert batch.bools is None and batch.texts is None


def test_it_keeps_booleans_apart_from_numbers() -> None:
    batch = parse_batch(body(sample(value=True), sample(value=False)), NOW, max_samples=10)
    assert batch.bools == [True, False] and batch.num is None


def test_it_splits_a_batch_mixing_kinds_into_one_array_per_kind() -> None:
    raw = body(sample(value=1), sample(point_id=PT2, value=True), sample(value="on"))
    batch = parse_batch(raw, NOW, max_samples=10)
    assert batch.num == [1.0, None, None]
    assert batch.bools == [None, True, None]
    assert batch.texts == [None, None, "on"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{not json", "body is not valid JSON"),
        (b'{"samples": [{"value": NaN}]}', "body is not valid JSON"),
        (b'{"samples": [{"value": Infinity}]}', "body is not valid JSON"),
        (b'{"samples": [{"value": 1e400}]}', "body is not valid JSON"),
        (b"[]", "must be a JSON object"),
        (b"{}", 'no "samples" list'),
        (b'{"samples": [], "extra": 1}', "unknown key(s) in body: extra"),
        (b'{"samples": {}}', '"samples" must be a list'),
        (b'{"samples": []}', '"samples" is empty'),
        (body(sample(), 7), "samples[1]: must be an object"),
        (body(sample(), sample(extra=1)), "samples[1]: unknown key(s) extra"),
        (
            body({"device_id": DEV, "point_id": PT, "ts": "2026-03-01T11:00:00Z"}),
            "samples[0]: missing key(s) value",
        ),
        (body(sample(device_id="dev-1")), "samples[0].device_id: must be a UUID string"),
        (body(sample(point_id=12)), "samples[0].point_id: must be a UUID string"),
        (body(sample(point_id=[PT])), "samples[0].point_id: must be a UUID string"),
        (body(sample(device_id="urn:uuid:" + DEV)), "samples[0].device_id: must be a UUID"),
        (body(sample(), sample(ts=1700000000)), "samples[1].ts: must be an ISO-8601 string"),
        (body(sample(ts="yesterday")), "samples[0].ts: not an ISO-8601 timestamp"),
        (
            body(sample(), sample(), sample(), sample(ts="2026-03-01T11:00:00")),
            "samples[3].ts: timestamp has no UTC offset",
        ),
        (body(sample(ts="2026-03-01")), "samples[0].ts: timestamp has no UTC offset"),
        (body(sample(ts="2026-03-02T12:00:01Z")), "samples[0].ts: more than 1 day in the future"),
        (body(sample(ts="2021-03-01T11:00:00Z")), "samples[0].ts: older than 1825 days"),
        (body(sample(value=None)), "samples[0].value: must not be null"),
        (body(sample(value=[1])), "samples[0].value: must be a number, boolean or string"),
        (body(sample(value={"v": 1})), "samples[0].value: must be a number, boolean or string"),
        (body(sample(value=1.0), sample(value=None)), "samples[1].value: must not be null"),
        (body(sample(value="x" * (MAX_TEXT_CHARS + 1))), "samples[0].value: text of 4097"),
        (body(sample(value=1), sample(value="x" * (MAX_TEXT_CHARS + 1))), "samples[1].value"),
        (body(sample(value=1.0), sample(value=1.7e308)), "samples[1].value: 1.7e+308 is out of"),
        (body(sample(value=-2e300)), "samples[0].value: -2e+300 is out of range"),
        (body(sample(value=0.0), sample(value=5e-324)), "samples[1].value: 5e-324 is out of"),
        (body(sample(value=True), sample(value=-1e-301)), "samples[1].value: -1e-301 is out"),
    ],
)
def test_it_rejects_bad_input_naming_the_problem(raw: bytes, message: str) -> None:
    error = rejected(raw)
    assert error.status == 400
    assert message in error.message


def test_it_accepts_the_limits_themselves() -> None:
    raw = body(
        sample(ts="2026-03-02T12:00:00Z", value="x" * MAX_TEXT_CHARS),
        sample(point_id=PT2, ts="2021-03-02T12:00:00Z", value=2**64 - 1),
        sample(device_id=DEV.upper(), point_id=PT2, value=-1e300),
        sample(value=1e-300),
        sample(value=-0.0),
    )
    batch = parse_batch(raw, NOW, max_samples=5)
    assert batch.texts is not None and batch.num is not None
    assert batch.num[2:] == [-1e300, 1e-300, -0.0]


def test_it_answers_413_for_a_batch_over_the_sample_limit() -> None:
    error = rejected(body(sample(), sample(), sample()), max_samples=2)
    assert (error.status, error.code) == (413, "batch_too_large")
    assert "3 samples" in error.message


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=3), inner, max_size=2)
    ),
    max_leaves=4,
)
_fields = st.sampled_from(["device_id", "point_id", "ts", "value", "extra"])


@settings(max_examples=300, deadline=None)
@given(
    index=st.integers(min_value=0, max_value=4),
    field=_fields,
    value=_json_values | st.sampled_from([DEV, "2026-03-01T11:00:00", "2026-03-01T11:00:00Z"]),
    drop=st.booleans(),
)
def test_it_either_accepts_a_sample_or_names_it(
    index: int, field: str, value: Any, drop: bool
) -> None:
    samples = [sample(ts=f"2026-03-01T11:00:0{i}Z", value=float(i)) for i in range(5)]
    if drop and field != "extra":
        del samples[index][field]
    else:
        samples[index][field] = value
    try:
        batch = parse_batch(body(*samples), NOW, max_samples=10)
    except ApiError as error:
        assert error.status == 400
        assert error.message.startswith(f"samples[{index}]"), error.message
        return
    assert len(batch) == 5
    for i in range(5):
        present = [arr[i] for arr in (batch.num, batch.bools, batch.texts) if arr is not None]
        assert sum(v is not None for v in present) == 1
