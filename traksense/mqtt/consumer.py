"""The MQTT ingest consumer: uplink messages → one ts_ingest call per tenant and batch → acks.

Threads. paho's network thread receives messages and only queues them (`_inbox`); the main
thread collects a batch (MQTT_BATCH_SAMPLES samples, or MQTT_BATCH_MS after its first message),
validates each message on its own (a bad one is rejected whole and answered on its errors
topic), writes each tenant's good messages in one transaction (traksense/ingest/write.py, the
HTTP path's), and only after every transaction of the batch has committed acknowledges the
batch's messages, in the order they arrived (MQTT wants PUBACKs in order).

Why this is safe (docs/adr/0008-mqtt-client-and-acks.md):
- the session is persistent (clean start off, a session expiry) and every message QoS 1: a
  message the consumer never acknowledged is redelivered when it reconnects, also after a kill;
- ingest is idempotent, so a message written but not yet acknowledged when the consumer died is
  written again as duplicates, never counted twice;
- acknowledgements of a connection that has since dropped are not sent (their packet ids mean
  nothing to the new connection): the broker redelivers those messages, harmlessly.
While the database is unreachable the batch is retried with a growing pause, unacknowledged;
the broker holds everything else (up to the client's receive maximum in flight, the rest queued
in the session).
"""

from __future__ import annotations

import logging
import queue
import struct
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import psycopg
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connections
from django.utils import timezone
from paho.mqtt.client import PUBACK
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from traksense.core.errors import ApiError
from traksense.db.context import tenant_context
from traksense.ingest.parse import Batch
from traksense.ingest.write import WriteResult, write_samples
from traksense.mqtt.broker import SHARED_SUBSCRIPTION
from traksense.mqtt.payload import concat, parse_payload, parse_topic
from traksense.mqtt.url import BrokerUrl
from traksense.observability.metrics import (
    MQTT_BATCH_SECONDS,
    MQTT_LAG_SECONDS,
    MQTT_MESSAGES,
    MQTT_REJECTED,
    MQTT_SAMPLES,
)
from traksense.tenancy.models import Tenant

log = logging.getLogger("traksense.mqtt")

# The most unacknowledged messages the broker may have in flight to us (MQTT 5 Receive
# Maximum; 65535 is the protocol's largest). Batches are held unacknowledged until they commit,
# so this must exceed a batch's messages by far.
RECEIVE_MAXIMUM = 65535
_RETRY_PAUSES = (0.5, 1, 2, 5, 10, 30)


@dataclass(slots=True)
class _Message:
    generation: int  # the connection it arrived on
    mid: int
    topic: str
    payload: bytes
    received: float  # time.monotonic()


@dataclass(slots=True)
class _Good:
    message: _Message
    tenant_id: str
    batch: Batch


@dataclass
class Stats:
    """Counts since start (the log's progress line; tests read them)."""

    messages: int = 0
    rejected: int = 0
    accepted: int = 0
    duplicates: int = 0
    batches: int = 0


class Consumer:
    def __init__(
        self,
        url: BrokerUrl,
        client_id: str | None = None,
        batch_samples: int | None = None,
        batch_ms: int | None = None,
    ) -> None:
        self.url = url
        self.client_id = client_id or settings.MQTT_CLIENT_ID
        self.batch_samples = batch_samples or settings.MQTT_BATCH_SAMPLES
        self.linger = (batch_ms or settings.MQTT_BATCH_MS) / 1000
        self.stats = Stats()
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self._inbox: queue.SimpleQueue[_Message] = queue.SimpleQueue()
        self._generation = 0
        self._known_tenants: set[str] = set()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        self._client.username_pw_set(url.username, url.password)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(1, 10)

    # --- running -----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Consume until `stop` is set; then leave without acknowledging what is not committed
        (the broker redelivers it to the next consumer of the session)."""
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = settings.MQTT_SESSION_EXPIRY
        props.ReceiveMaximum = RECEIVE_MAXIMUM
        self._client.connect_async(
            self.url.host, self.url.port, keepalive=30, clean_start=False, properties=props
        )
        self._client.loop_start()
        last_report = time.monotonic()
        try:
            while not stop.is_set():
                messages = self._collect(stop)
                if messages:
                    self._process(messages, stop)
                if time.monotonic() - last_report >= 10:
                    last_report = time.monotonic()
                    s = self.stats
                    log.info(
                        "mqtt: %d messages (%d rejected), %d samples accepted, %d duplicates",
                        s.messages,
                        s.rejected,
                        s.accepted,
                        s.duplicates,
                    )
        finally:
            self._client.disconnect()
            self._client.loop_stop()

    def _collect(self, stop: threading.Event) -> list[_Message]:
        """Up to batch_samples samples' worth of messages (a message's payload bytes stand in
        for its samples until it is parsed: ~40 bytes a sample), or what came within `linger`
        of the first."""
        try:
            first = self._inbox.get(timeout=0.2)
        except queue.Empty:
            return []
        messages = [first]
        budget = self.batch_samples * 40 - len(first.payload)
        deadline = first.received + self.linger
        while budget > 0 and not stop.is_set():
            wait = deadline - time.monotonic()
            try:
                message = self._inbox.get(timeout=wait) if wait > 0 else self._inbox.get_nowait()
            except queue.Empty:
                break
            messages.append(message)
            budget -= len(message.payload)
        return messages

    # --- one batch ---------------------------------------------------------------------------

    def _process(self, messages: list[_Message], stop: threading.Event) -> None:
        started = time.monotonic()
        now = timezone.now()
        good: dict[str, list[_Good]] = defaultdict(list)
        rejected: list[tuple[_Message, ApiError]] = []
        for message in messages:
            try:
                topic = parse_topic(message.topic)
                batch = parse_payload(
                    topic.device_id,
                    message.payload,
                    now,
                    settings.MQTT_MAX_PAYLOAD,
                    settings.INGEST_MAX_SAMPLES,
                )
            except ApiError as exc:
                rejected.append((message, exc))
                continue
            good[topic.tenant_id].append(_Good(message, topic.tenant_id, batch))
        if good and not self._retrying(lambda: self._check_tenants(good, rejected), stop):
            return
        for items in good.values():
            if not self._retrying(partial(self._write_tenant, items, rejected), stop):
                return  # stopping while the database is down: nothing acknowledged
        answered: set[int] = set()  # a retried batch may have refused a message twice
        for message, error in rejected:
            if id(message) not in answered:
                answered.add(id(message))
                self._reject(message, error)
        self._ack(messages)
        MQTT_MESSAGES.labels("written").inc(len(messages) - len(answered))
        MQTT_BATCH_SECONDS.observe(time.monotonic() - started)
        MQTT_LAG_SECONDS.set(time.monotonic() - messages[0].received)
        self.stats.batches += 1
        self.stats.messages += len(messages)

    def _check_tenants(
        self, good: dict[str, list[_Good]], rejected: list[tuple[_Message, ApiError]]
    ) -> None:
        """Reject messages for a tenant that does not exist (only the consumer's or an admin's
        credential could publish there: the broker's ACLs name existing tenants)."""
        unknown = set(good) - self._known_tenants
        if unknown:
            ids = [uuid.UUID(t) for t in unknown]
            found = {str(t) for t in Tenant.objects.filter(id__in=ids).values_list("id", flat=True)}
            self._known_tenants |= found
            for tenant in unknown - found:
                for item in good.pop(tenant):
                    rejected.append(
                        (item.message, ApiError(404, "unknown_tenant", f"no tenant {tenant}"))
                    )

    def _write_tenant(self, items: list[_Good], rejected: list[tuple[_Message, ApiError]]) -> None:
        """All of a tenant's messages in one transaction. When the database refuses the batch
        for its content (a point's kind; a statement error no check foresaw), each message on
        its own, so that only the bad one is rejected; an error that is the database's state
        (unreachable, a deadlock) propagates, and the batch is retried."""
        tenant = items[0].tenant_id
        try:
            self._count(self._write(tenant, concat([i.batch for i in items])))
            return
        except (ApiError, DatabaseError, psycopg.Error) as exc:
            if _transient(exc):
                raise
            if len(items) == 1:
                rejected.append((items[0].message, _refusal(exc)))
                return
        for item in items:
            try:
                self._count(self._write(tenant, item.batch))
            except (ApiError, DatabaseError, psycopg.Error) as exc:
                if _transient(exc):
                    raise
                rejected.append((item.message, _refusal(exc)))

    @staticmethod
    def _write(tenant: str, batch: Batch) -> WriteResult:
        with tenant_context(tenant):
            return write_samples(batch)

    def _count(self, result: WriteResult) -> None:
        self.stats.accepted += result.accepted
        self.stats.duplicates += result.duplicates
        MQTT_SAMPLES.labels("accepted").inc(result.accepted - result.overwritten)
        MQTT_SAMPLES.labels("overwritten").inc(result.overwritten)
        MQTT_SAMPLES.labels("duplicate").inc(result.duplicates)

    def _retrying(self, step: Callable[[], None], stop: threading.Event) -> bool:
        """Run `step` until the database lets it through; False when stopped first."""
        attempt = 0
        while True:
            try:
                step()
                return True
            except (DatabaseError, psycopg.Error) as exc:
                if not _transient(exc):
                    raise
                pause = _RETRY_PAUSES[min(attempt, len(_RETRY_PAUSES) - 1)]
                attempt += 1
                log.warning("mqtt: database unavailable (%s); retrying in %s s", exc, pause)
                connections.close_all()
                if stop.wait(pause):
                    return False

    def _reject(self, message: _Message, error: ApiError) -> None:
        self.stats.rejected += 1
        MQTT_MESSAGES.labels("rejected").inc()
        MQTT_REJECTED.labels(error.code).inc()
        log.info("mqtt: rejected a message on %s: %s", message.topic, error.message)
        errors_topic = _errors_topic(message.topic)
        if errors_topic is not None:
            body = {"error": {"code": error.code, "message": error.message}}
            self._client.publish(errors_topic, orjson.dumps(body), qos=1)

    def _ack(self, messages: list[_Message]) -> None:
        """PUBACK every message of the batch that came on the current connection, in order, as
        one write. paho's ack() queues one packet per message and wakes its network thread
        through a socket each time: ~150 µs a message under the GIL, more than validating it.
        The batch's PUBACKs (4 bytes each in MQTT 5 when the reason is success, §3.4.2.1) are
        instead queued as one packet through the same internal queue ack() uses (paho 2.x,
        pinned in pyproject.toml); without it, ack() one by one."""
        generation = self._generation
        mids = [m.mid for m in messages if m.generation == generation]
        if not mids:
            return
        queue_packet = getattr(self._client, "_packet_queue", None)
        if queue_packet is None:  # pragma: no cover - another paho
            for mid in mids:
                self._client.ack(mid, 1)
            return
        queue_packet(PUBACK, b"".join(map(_puback, mids)), 0, 0)

    # --- paho callbacks (network thread) -----------------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        if reason.is_failure:
            log.error("mqtt: the broker at %s refused the consumer: %s", self.url, reason)
            return
        log.info(
            "mqtt: connected to %s as %s (session %s)",
            self.url,
            self.client_id,
            "resumed" if flags.session_present else "new",
        )
        self.connected.set()
        # Subscribing again on a resumed session is harmless and covers a session that expired.
        client.subscribe(SHARED_SUBSCRIPTION, qos=1)

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reasons: list[ReasonCode], props: Any
    ) -> None:
        if any(r.is_failure for r in reasons):
            log.error(
                "mqtt: the broker refused the subscription %s: %s", SHARED_SUBSCRIPTION, reasons
            )
            return
        self.subscribed.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        self._generation += 1
        self.connected.clear()
        self.subscribed.clear()
        log.warning("mqtt: disconnected from %s (%s); reconnecting", self.url, reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self._inbox.put(
            _Message(
                self._generation,
                message.mid,
                message.topic,
                bytes(message.payload),
                time.monotonic(),
            )
        )


def _puback(mid: int) -> bytes:
    return _PUBACK.pack(PUBACK, 2, mid)


_PUBACK = struct.Struct(">BBH")  # fixed header, remaining length 2, packet id


def _errors_topic(topic: str) -> str | None:
    parts = topic.split("/")
    if len(parts) == 4 and parts[0] == "ts" and "+" not in topic and "#" not in topic:
        return f"ts/{parts[1]}/{parts[2]}/errors"
    return None


# Serialization failure, deadlock, lock timeout, statement cancelled: worth another try.
_TRANSIENT_STATES = ("40001", "40P01", "55P03", "57014")


def _transient(exc: BaseException) -> bool:
    """An error that is the database's state (unreachable, restarting, a deadlock), not the
    batch's content: the batch is retried, never rejected, for it."""
    if isinstance(exc, ApiError):
        return False
    if isinstance(exc, OperationalError | InterfaceError | psycopg.OperationalError):
        return True
    if isinstance(exc, psycopg.InterfaceError):
        return True
    cause = exc if isinstance(exc, psycopg.Error) else exc.__cause__
    sqlstate = getattr(cause, "sqlstate", None) or ""
    return sqlstate in _TRANSIENT_STATES or sqlstate.startswith(("08", "57P", "53"))


def _refusal(exc: BaseException) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    log.exception("mqtt: the database refused a message", exc_info=exc)
    return ApiError(400, "storage_error", "the database refused this message; see the server log")
