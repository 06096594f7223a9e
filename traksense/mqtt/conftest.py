"""A real Mosquitto for the MQTT tests: started once per session on a free port, with the
dynamic-security plugin, by the same code as `traksense mqtt broker`; and MQTT 5 test clients."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
from django.db import connections
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from traksense.mqtt import broker
from traksense.mqtt.consumer import Consumer
from traksense.mqtt.url import BrokerUrl


@dataclass
class Broker:
    directory: Path
    port: int
    admin: BrokerUrl
    consumer: BrokerUrl
    process: subprocess.Popen[bytes]


@pytest.fixture(scope="session")
def mosquitto() -> Iterator[Broker]:
    try:
        broker.mosquitto_binary()
        broker.plugin_path()
    except broker.BrokerError as exc:
        # Never a silent pass: without a broker the MQTT tests fail and say why.
        pytest.fail(f"the MQTT tests need a real Mosquitto: {exc}", pytrace=False)
    directory = Path(tempfile.mkdtemp(prefix="traksense-mosquitto-"))
    port = broker.free_port()
    admin, consumer = broker.prepare(directory, port)
    process = broker.start(directory, port)
    broker.ensure_consumer(admin, consumer)
    yield Broker(directory, port, admin, consumer, process)
    process.terminate()
    process.wait(10)
    shutil.rmtree(directory, ignore_errors=True)


@dataclass
class Device:
    """An MQTT 5 client of the tests: publishes QoS 1 and records what the broker answered."""

    client: mqtt.Client
    refused: ReasonCode | None = None
    disconnected: threading.Event = field(default_factory=threading.Event)
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    _acked: dict[int, ReasonCode] = field(default_factory=dict)
    _subacks: dict[int, list[ReasonCode]] = field(default_factory=dict)
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def publish(self, topic: str, payload: Any, timeout: float = 10) -> ReasonCode:
        """Publish and return the broker's PUBACK reason (e.g. "Not authorized")."""
        body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        info = self.client.publish(topic, body, qos=1)
        with self._cond:
            assert self._cond.wait_for(lambda: info.mid in self._acked, timeout), "no PUBACK"
            return self._acked.pop(info.mid)

    def subscribe(self, topic: str, timeout: float = 10) -> list[ReasonCode]:
        _, mid = self.client.subscribe(topic, qos=1)
        assert mid is not None
        with self._cond:
            assert self._cond.wait_for(lambda: mid in self._subacks, timeout), "no SUBACK"
            return self._subacks.pop(mid)

    def wait_messages(self, n: int, timeout: float = 15) -> list[tuple[str, dict[str, Any]]]:
        with self._cond:
            self._cond.wait_for(lambda: len(self.received) >= n, timeout)
            return list(self.received)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def connect(port: int, username: str, password: str, client_id: str | None = None) -> Device:
    """A connected Device; `refused` is set (and the client stopped) when the broker says no."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id or f"test-{uuid.uuid4().hex[:10]}",
        protocol=mqtt.MQTTv5,
    )
    client.username_pw_set(username, password)
    device = Device(client)
    connected = threading.Event()

    def on_connect(c: Any, u: Any, flags: Any, reason: ReasonCode, props: Any) -> None:
        if reason.is_failure:
            device.refused = reason
        connected.set()

    def on_publish(c: Any, u: Any, mid: int, reason: ReasonCode, props: Any) -> None:
        with device._cond:
            device._acked[mid] = reason
            device._cond.notify_all()

    def on_subscribe(c: Any, u: Any, mid: int, reasons: list[ReasonCode], props: Any) -> None:
        with device._cond:
            device._subacks[mid] = reasons
            device._cond.notify_all()

    def on_message(c: Any, u: Any, message: mqtt.MQTTMessage) -> None:
        with device._cond:
            device.received.append((message.topic, orjson.loads(message.payload)))
            device._cond.notify_all()

    def on_disconnect(c: Any, u: Any, flags: Any, reason: ReasonCode, props: Any) -> None:
        device.disconnected.set()

    client.on_connect = on_connect
    client.on_publish = on_publish
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.on_disconnect = on_disconnect
    client.connect("127.0.0.1", port, keepalive=30)
    client.loop_start()
    assert connected.wait(10), "no CONNACK"
    if device.refused is not None:
        client.loop_stop()
    return device


class RunningConsumer:
    """A Consumer on a thread of the test process (its own database connection)."""

    def __init__(self, url: BrokerUrl, client_id: str, **kwargs: Any) -> None:
        self.consumer = Consumer(url, client_id, **kwargs)
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.consumer.subscribed.wait(10), "the consumer did not subscribe"

    def _run(self) -> None:
        try:
            self.consumer.run(self.stop)
        except BaseException as exc:  # reported by close()
            self.error = exc
        finally:
            connections.close_all()

    def close(self, forget: bool = True) -> None:
        """Stop it; forget=True also ends its session at the broker (see forget_session)."""
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive()
        if forget:
            forget_session(self.consumer.url, self.consumer.client_id)
        if self.error is not None:
            raise self.error


def forget_session(url: BrokerUrl, client_id: str) -> None:
    """End a consumer's persistent session. Mosquitto shares a group's messages round-robin
    among its sessions whether or not they are connected: a session left behind by one test
    would take a share of the next test's messages (docs/mqtt.md, "Scaling")."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.username_pw_set(url.username, url.password)
    client.connect(url.host, url.port, clean_start=True)  # no session expiry: ends on disconnect
    client.loop_start()
    wait_until(client.is_connected, 10, "the session's reset")
    client.disconnect()
    client.loop_stop()


def wait_until(predicate: Any, timeout: float = 20, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def consumer_env(base: dict[str, str], url: BrokerUrl, client_id: str) -> dict[str, str]:
    env = dict(base)
    env["MQTT_URL"] = f"mqtt://{url.username}:{url.password}@{url.host}:{url.port}"
    env["MQTT_CLIENT_ID"] = client_id
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env
