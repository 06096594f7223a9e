"""MQTT ingest end to end against a real Mosquitto and PostgreSQL: publish → stored → readable,
acknowledgement after commit (kills, restarts, shared subscriptions), errors back to the device,
and the tenant wall enforced by the broker."""

from __future__ import annotations

import datetime as dt
import io
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator

import mqtt5
import pytest
from django.core.management import call_command
from django.test import override_settings
from prometheus_client.parser import text_string_to_metric_families

from traksense.conftest import TenantFixture
from traksense.db.context import tenant_context
from traksense.mqtt import broker, credentials
from traksense.mqtt.conftest import (
    Broker,
    Device,
    RunningConsumer,
    connect,
    consumer_env,
    forget_session,
    wait_until,
)
from traksense.mqtt.wire import Connection
from traksense.rollups.test_jobs_support import subprocess_env

pytestmark = pytest.mark.usefixtures("committed_db")

BASE = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0) - dt.timedelta(hours=6)


def reading(minute: int, values: dict[str, object]) -> dict[str, object]:
    return {"ts": (BASE + dt.timedelta(minutes=minute)).isoformat(), "values": values}


def stored(tenant: uuid.UUID) -> list[tuple[str, str, dt.datetime, str]]:
    with tenant_context(tenant) as cursor:
        cursor.execute(
            "SELECT device_id::text, point_id::text, ts, coalesce(v_num::text, v_bool::text,"
            " v_text) FROM ts_measure_tenant ORDER BY 1, 2, 3"
        )
        return list(cursor.fetchall())


def count(tenant: uuid.UUID) -> int:
    return len(stored(tenant))


@pytest.fixture
def device_of(mosquitto: Broker) -> Iterator[Callable[..., Device]]:
    """A connected device client with a fresh credential of `tenant` (and `device`)."""
    made: list[Device] = []

    def make(tenant: uuid.UUID, device: uuid.UUID | None = None) -> Device:
        username, password = credentials.create(mosquitto.admin, tenant, device)
        client = connect(mosquitto.port, username, password)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def consumer(mosquitto: Broker) -> Iterator[RunningConsumer]:
    running = RunningConsumer(mosquitto.consumer, f"consumer-{uuid.uuid4().hex[:8]}")
    yield running
    running.close()


def test_round_trip_publish_then_read_over_http(
    tenant_a: TenantFixture, device_of: Callable[..., Device], consumer: RunningConsumer
) -> None:
    dev, temp, on = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    client = device_of(tenant_a.id, dev)
    payload = [reading(0, {str(temp): 21.5, str(on): True}), reading(1, {str(temp): 22})]
    assert not client.publish(f"ts/{tenant_a.id}/{dev}/up", payload).is_failure
    wait_until(lambda: count(tenant_a.id) == 3, what="3 samples stored")
    answer = tenant_a.client.get(
        "/data/points",
        {
            "device_id": str(dev),
            "point_id": str(temp),
            "start": BASE.isoformat(),
            "end": (BASE + dt.timedelta(minutes=5)).isoformat(),
        },
    ).json()
    assert [row["v"] for row in answer["data"]] == [21.5, 22.0]


def test_bad_messages_get_an_error_back_write_nothing_and_the_stream_goes_on(
    tenant_a: TenantFixture, device_of: Callable[..., Device], consumer: RunningConsumer
) -> None:
    dev, point = uuid.uuid4(), uuid.uuid4()
    client = device_of(tenant_a.id, dev)
    assert not client.subscribe(f"ts/{tenant_a.id}/{dev}/errors")[0].is_failure
    up = f"ts/{tenant_a.id}/{dev}/up"
    bad: list[bytes | object] = [
        b"{oops",  # malformed JSON
        reading(0, {str(point): "text"}) | {"ts": "2026-12-07T10:00:00"},  # missing offset
        {"ts": BASE.isoformat(), "values": {str(point): [1, 2]}},  # wrong type
        {"time": BASE.isoformat(), "values": {str(point): 1}},  # unknown shape
        [reading(0, {str(point): 1}), reading(1, {str(point): None})],  # one bad reading
        reading(0, {str(point): "x" * 300_000}),  # over MQTT_MAX_PAYLOAD (256 KiB)
    ]
    for message in bad:
        client.publish(up, message)
    client.publish(up, reading(5, {str(point): 7.0}))  # a good one after the bad ones
    errors = client.wait_messages(len(bad))
    codes = [body["error"]["code"] for _, body in errors]
    assert codes == [
        "invalid_json",
        "bad_request",
        "bad_request",
        "bad_request",
        "bad_request",
        "payload_too_large",
    ]
    assert "no UTC offset" in errors[1][1]["error"]["message"]
    assert "payload[1]" in errors[4][1]["error"]["message"]
    wait_until(lambda: count(tenant_a.id) == 1, what="the good message stored")
    assert stored(tenant_a.id)[0][3] == "7"
    assert consumer.consumer.stats.rejected == len(bad)


def test_a_kind_mismatch_rejects_only_its_own_message(
    tenant_a: TenantFixture, device_of: Callable[..., Device], mosquitto: Broker
) -> None:
    # A long linger puts both messages into one batch: the batch's write fails, and each
    # message is then written on its own.
    dev, point, other = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    client = device_of(tenant_a.id, dev)
    client.subscribe(f"ts/{tenant_a.id}/{dev}/errors")
    up = f"ts/{tenant_a.id}/{dev}/up"
    running = RunningConsumer(mosquitto.consumer, f"consumer-{uuid.uuid4().hex[:8]}")
    client.publish(up, reading(0, {str(point): 1.0}))
    wait_until(lambda: count(tenant_a.id) == 1, what="the point's first sample")
    running.close(forget=False)
    client.publish(up, reading(1, {str(point): "a string for a numeric point"}))
    client.publish(up, reading(1, {str(other): 2.0}))
    running = RunningConsumer(mosquitto.consumer, running.consumer.client_id, batch_ms=1500)
    try:
        errors = client.wait_messages(1)
        wait_until(lambda: count(tenant_a.id) == 2, what="the good message stored")
    finally:
        running.close()
    assert [body["error"]["code"] for _, body in errors] == ["kind_mismatch"]


def test_the_broker_refuses_another_tenants_topics(
    tenant_a: TenantFixture,
    tenant_b: TenantFixture,
    device_of: Callable[..., Device],
    consumer: RunningConsumer,
) -> None:
    dev, point = uuid.uuid4(), uuid.uuid4()
    a = device_of(tenant_a.id)  # a gateway credential: any device of tenant A
    assert a.publish(f"ts/{tenant_b.id}/{dev}/up", reading(0, {str(point): 1})).is_failure
    assert a.subscribe(f"ts/{tenant_b.id}/+/errors")[0].is_failure
    assert a.subscribe(f"ts/{tenant_b.id}/{dev}/errors")[0].is_failure
    assert a.subscribe("ts/#")[0].is_failure
    assert a.subscribe("$share/x/ts/+/+/up")[0].is_failure  # the consumer's subscription
    # A per-device credential of tenant A cannot speak for another device of A either.
    one = device_of(tenant_a.id, uuid.uuid4())
    assert one.publish(f"ts/{tenant_a.id}/{dev}/up", reading(0, {str(point): 1})).is_failure
    # What A may do lands in A only.
    assert not a.publish(f"ts/{tenant_a.id}/{dev}/up", reading(0, {str(point): 1})).is_failure
    wait_until(lambda: count(tenant_a.id) == 1, what="A's sample")
    time.sleep(0.5)
    assert count(tenant_b.id) == 0


def test_a_revoked_credential_is_disconnected_and_refused(
    tenant_a: TenantFixture, mosquitto: Broker
) -> None:
    username, password = credentials.create(mosquitto.admin, tenant_a.id, None)
    client = connect(mosquitto.port, username, password)
    assert client.refused is None
    assert [c.username for c in credentials.list_for(mosquitto.admin, tenant_a.id)] == [username]
    credentials.revoke(mosquitto.admin, username)
    assert client.disconnected.wait(10)
    client.close()
    again = connect(mosquitto.port, username, password)
    assert again.refused is not None
    assert credentials.list_for(mosquitto.admin, tenant_a.id) == []


def test_the_cli_creates_lists_and_revokes(
    tenant_a: TenantFixture, mosquitto: Broker, capsys: pytest.CaptureFixture[str]
) -> None:
    admin = mosquitto.admin
    url = f"mqtt://{admin.username}:{admin.password}@127.0.0.1:{admin.port}"
    device = uuid.uuid4()
    with override_settings(MQTT_ADMIN_URL=url):
        call_command(
            "mqtt", "credential", "create", "--tenant", str(tenant_a.id), "--device", str(device)
        )
        username, password = capsys.readouterr().out.split()
        call_command("mqtt", "credential", "list", "--tenant", str(tenant_a.id))
        assert capsys.readouterr().out.split() == [username, str(tenant_a.id), str(device)]
        client = connect(mosquitto.port, username, password)
        assert client.refused is None
        client.close()
        call_command("mqtt", "credential", "revoke", username)
        call_command("mqtt", "credential", "list", "--tenant", str(tenant_a.id))
        assert capsys.readouterr().out == ""
        with pytest.raises(Exception, match="no tenant"):
            call_command("mqtt", "credential", "create", "--tenant", str(uuid.uuid4()))


def test_messages_published_while_the_consumer_is_down_are_not_lost(
    tenant_a: TenantFixture, device_of: Callable[..., Device], mosquitto: Broker
) -> None:
    client_id = f"consumer-{uuid.uuid4().hex[:8]}"
    RunningConsumer(mosquitto.consumer, client_id).close(forget=False)  # a persistent session
    dev, point = uuid.uuid4(), uuid.uuid4()
    client = device_of(tenant_a.id, dev)
    for minute in range(50):
        client.publish(f"ts/{tenant_a.id}/{dev}/up", reading(minute, {str(point): minute}))
    assert count(tenant_a.id) == 0
    running = RunningConsumer(mosquitto.consumer, client_id)
    try:
        wait_until(lambda: count(tenant_a.id) == 50, what="the 50 queued messages")
    finally:
        running.close()


def test_two_consumers_share_the_load_each_message_written_once(
    tenant_a: TenantFixture, device_of: Callable[..., Device], mosquitto: Broker
) -> None:
    first = RunningConsumer(mosquitto.consumer, f"consumer-{uuid.uuid4().hex[:8]}", batch_ms=20)
    second = RunningConsumer(mosquitto.consumer, f"consumer-{uuid.uuid4().hex[:8]}", batch_ms=20)
    dev, point = uuid.uuid4(), uuid.uuid4()
    client = device_of(tenant_a.id, dev)
    try:
        for minute in range(200):
            client.publish(f"ts/{tenant_a.id}/{dev}/up", reading(minute, {str(point): minute}))
        wait_until(lambda: count(tenant_a.id) == 200, what="200 samples")
        wait_until(
            lambda: first.consumer.stats.messages + second.consumer.stats.messages == 200,
            what="both consumers' counts",
        )
    finally:
        first.close()
        second.close()
    # Each message went to one consumer (the counts add up to 200, none was a duplicate), and
    # the broker gave both a share.
    assert first.consumer.stats.messages > 0 and second.consumer.stats.messages > 0
    assert first.consumer.stats.duplicates + second.consumer.stats.duplicates == 0


def _consumer_process(
    mosquitto: Broker, client_id: str, batch_ms: int, **extra_env: str
) -> subprocess.Popen[bytes]:
    env = consumer_env(subprocess_env("mqtt-consumer"), mosquitto.consumer, client_id)
    env["MQTT_BATCH_MS"] = str(batch_ms)
    env.update(extra_env)
    process = subprocess.Popen(
        [sys.executable, "-m", "traksense", "mqtt"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert process.stdout is not None
    os.set_blocking(process.stdout.fileno(), True)
    deadline = time.monotonic() + 30
    log = b""
    while time.monotonic() < deadline and b"session" not in log:
        line = process.stdout.readline()
        if not line:
            break
        log += line
    assert b"session" in log, log.decode(errors="replace")
    return process


def test_a_killed_consumer_loses_nothing_and_counts_nothing_twice(
    tenant_a: TenantFixture, device_of: Callable[..., Device], mosquitto: Broker
) -> None:
    client_id = f"consumer-{uuid.uuid4().hex[:8]}"
    dev, point = uuid.uuid4(), uuid.uuid4()
    client = device_of(tenant_a.id, dev)
    up = f"ts/{tenant_a.id}/{dev}/up"
    # 1. Killed while it holds delivered, unacknowledged messages (a 5 s batch window).
    process = _consumer_process(mosquitto, client_id, batch_ms=5000)
    time.sleep(0.5)  # its subscription is in place
    for minute in range(20):
        client.publish(up, reading(minute, {str(point): minute}))
    time.sleep(1.0)
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    assert count(tenant_a.id) == 0  # nothing was committed, nothing acknowledged
    # 2. Killed again and again at arbitrary moments while messages flow (some committed and
    # not yet acknowledged, redelivered on restart, written again as duplicates).
    sent = 20
    for _ in range(3):
        process = _consumer_process(mosquitto, client_id, batch_ms=30)
        for _ in range(40):
            client.publish(up, reading(sent, {str(point): sent}))
            sent += 1
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    process = _consumer_process(mosquitto, client_id, batch_ms=30)
    try:
        wait_until(lambda: count(tenant_a.id) == sent, what=f"{sent} samples")
    finally:
        process.terminate()
        process.wait(20)
        forget_session(mosquitto.consumer, client_id)
    rows = stored(tenant_a.id)
    assert [float(r[3]) for r in rows] == [float(m) for m in range(sent)]  # each exactly once
    call_command("refresh", "--tier", "1m")
    with tenant_context(tenant_a.id) as cursor:
        cursor.execute("SELECT sum(n), count(*) FROM ts_measure_1m_tenant")
        assert cursor.fetchone() == (sent, sent)


def test_a_devices_messages_are_written_in_the_order_it_published_them(
    tenant_a: TenantFixture, device_of: Callable[..., Device], mosquitto: Broker
) -> None:
    # Several writers, small batches: each device's corrections of one reading must still land
    # last-published-wins (its messages always take the same writer, one batch after another).
    devices = [uuid.uuid4() for _ in range(4)]
    point = uuid.uuid4()
    clients = [device_of(tenant_a.id, d) for d in devices]
    # At most 8 samples a batch: many batches however the machine's load bunches the messages.
    running = RunningConsumer(
        mosquitto.consumer,
        f"consumer-{uuid.uuid4().hex[:8]}",
        batch_ms=5,
        batch_samples=8,
        writers=3,
    )
    try:
        for value in range(1, 61):
            for dev, client in zip(devices, clients, strict=True):
                client.publish(f"ts/{tenant_a.id}/{dev}/up", reading(0, {str(point): value}))
        wait_until(lambda: running.consumer.stats.messages == 240, what="every message consumed")
    finally:
        running.close()
    assert sorted(row[3] for row in stored(tenant_a.id)) == ["60"] * 4
    assert running.consumer.stats.batches > 4  # many batches, so the writers did race


def test_retire_writes_what_a_stopped_consumers_session_holds_then_ends_it(
    tenant_a: TenantFixture, device_of: Callable[..., Device], mosquitto: Broker
) -> None:
    # Mosquitto shares among a group's sessions, connected or not: a consumer stopped without
    # retiring keeps taking its share into its queue. --retire drains that queue and ends it.
    retired_id = f"consumer-{uuid.uuid4().hex[:8]}"
    RunningConsumer(mosquitto.consumer, retired_id).close(forget=False)
    staying = RunningConsumer(mosquitto.consumer, f"consumer-{uuid.uuid4().hex[:8]}", batch_ms=20)
    dev, point = uuid.uuid4(), uuid.uuid4()
    client = device_of(tenant_a.id, dev)
    up = f"ts/{tenant_a.id}/{dev}/up"
    try:
        for minute in range(100):
            client.publish(up, reading(minute, {str(point): minute}))
        wait_until(lambda: staying.consumer.stats.messages > 0, what="the staying consumer's share")
        assert count(tenant_a.id) < 100  # the stopped session holds the rest
        url = mosquitto.consumer
        out = io.StringIO()
        with override_settings(
            MQTT_URL=f"mqtt://{url.username}:{url.password}@{url.host}:{url.port}"
        ):
            call_command("mqtt", "--retire", "--client-id", retired_id, stdout=out)
        assert f"retired session {retired_id}" in out.getvalue()
        assert count(tenant_a.id) == 100
        # The broker no longer knows the session.
        probe = Connection.open(
            url.host,
            url.port,
            mqtt5.ConnectPacket(retired_id, username=url.username, password=url.password.encode()),
        )
        assert not probe.connack.session_present
        probe.close(disconnect=True, end_session=True)
        # The session is gone: every later message goes to the staying consumer.
        for minute in range(100, 200):
            client.publish(up, reading(minute, {str(point): minute}))
        wait_until(lambda: count(tenant_a.id) == 200, what="the next 100, all to the staying one")
    finally:
        staying.close()
    assert staying.consumer.stats.duplicates == 0


def test_a_standalone_consumer_serves_its_own_metrics(
    tenant_a: TenantFixture, device_of: Callable[..., Device], mosquitto: Broker
) -> None:
    # `traksense mqtt` on its own (the scale-out mode) has no API whose /metrics would carry
    # its counters: with MQTT_METRICS_PORT it serves them itself.
    client_id = f"consumer-{uuid.uuid4().hex[:8]}"
    port = broker.free_port()
    dev, point = uuid.uuid4(), uuid.uuid4()
    client = device_of(tenant_a.id, dev)
    process = _consumer_process(mosquitto, client_id, batch_ms=30, MQTT_METRICS_PORT=str(port))
    try:
        client.publish(f"ts/{tenant_a.id}/{dev}/up", reading(0, {str(point): 1.5}))
        client.publish(f"ts/{tenant_a.id}/{dev}/up", b"{oops")
        wait_until(lambda: count(tenant_a.id) == 1, what="the good message stored")

        def scraped() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
            body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
            return {
                (sample.name, tuple(sorted(sample.labels.items()))): sample.value
                for family in text_string_to_metric_families(body.decode())
                for sample in family.samples
            }

        wait_until(
            lambda: (
                scraped().get(("traksense_mqtt_rejected_total", (("code", "invalid_json"),))) == 1
            ),
            what="the rejection counted",
        )
        samples = scraped()
        assert samples[("traksense_mqtt_messages_total", (("outcome", "written"),))] == 1
        assert samples[("traksense_mqtt_samples_total", (("outcome", "accepted"),))] == 1
    finally:
        process.terminate()
        process.wait(20)
        forget_session(mosquitto.consumer, client_id)
