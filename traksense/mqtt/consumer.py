"""The MQTT ingest consumer: uplink messages → one ts_ingest call per tenant and batch → acks.

Threads. The network thread (one MQTT 5 connection, traksense/mqtt/wire.py) receives messages,
puts each into the lane of its topic (so a device's messages stay in order), keeps the
connection alive and reconnects. Each of MQTT_WRITERS writer threads, on its own database
connection, collects a batch from its lane (MQTT_BATCH_SAMPLES samples, or MQTT_BATCH_MS after
its first message), validates a tenant's messages together (when one is bad, each on its own:
a bad one is rejected whole and answered on its errors topic), writes each tenant's good
messages in one transaction (traksense/ingest/write.py, the HTTP path's), and only after they
committed marks them done. Acknowledgements go out in the order the messages arrived (MQTT
wants PUBACKs in order), as one write, for every done message with no undone one before it.

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

import contextlib
import logging
import queue
import struct
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial

import mqtt5
import orjson
import psycopg
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connections
from django.utils import timezone

from traksense.core.errors import ApiError
from traksense.db.context import tenant_context
from traksense.ingest.parse import Batch
from traksense.ingest.write import WriteResult, write_samples
from traksense.mqtt.broker import SHARED_SUBSCRIPTION
from traksense.mqtt.payload import concat, parse_payload, parse_together, parse_topic
from traksense.mqtt.url import BrokerUrl
from traksense.mqtt.wire import Connection, ProtocolError, Refused
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
KEEP_ALIVE = 30  # seconds; a PINGREQ after half of it without sending, PINGRESP awaited for all
_RECONNECT_PAUSES = (1, 2, 5, 10)


@dataclass(slots=True)
class _Message:
    generation: int  # the connection it arrived on
    mid: int | None  # its packet id; None at QoS 0 (nothing to acknowledge)
    topic: str
    payload: bytes
    received: float  # time.monotonic()
    done: bool = False  # written or rejected: may be acknowledged once all before it are


@dataclass(slots=True)
class _Group:
    """A tenant's valid messages of a batch, and their samples as one Batch."""

    messages: list[_Message]
    devices: list[str]  # each message's, from its topic
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
        writers: int | None = None,
        retire: bool = False,
    ) -> None:
        self.url = url
        self.client_id = client_id or settings.MQTT_CLIENT_ID
        self.batch_samples = batch_samples or settings.MQTT_BATCH_SAMPLES
        self.linger = (batch_ms or settings.MQTT_BATCH_MS) / 1000
        self.stats = Stats()
        # Retiring: unsubscribe instead of subscribing, write what the session still holds,
        # then end the session (see retire()).
        self.retiring = retire
        self.unsubscribed = threading.Event()
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        # A lane per writer; a topic (a device) always lands in the same one. _arrived holds
        # every message in the order the broker sent it, for the acknowledgements.
        self._lanes: list[queue.SimpleQueue[_Message]] = [
            queue.SimpleQueue() for _ in range(writers or settings.MQTT_WRITERS)
        ]
        self._arrived: deque[_Message] = deque()
        self._arrived_total = 0
        self._ack_lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self._generation = 0
        self._known_tenants: set[str] = set()
        # The current connection, under _lock (the main thread acknowledges and publishes
        # errors on it, the network thread replaces it); None while disconnected.
        self._lock = threading.Lock()
        self._connection: Connection | None = None
        self._closing = threading.Event()
        # Our own QoS 1 publishes (error answers) not yet acknowledged by the broker, which
        # allows at most its Receive Maximum of them in flight.
        self._packet_id = 0
        self._in_flight: set[int] = set()

    # --- running -----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Consume until `stop` is set; then leave without acknowledging what is not committed
        (the broker redelivers it to the next consumer of the session)."""
        network = threading.Thread(target=self._network, name="mqtt-network", daemon=True)
        network.start()
        writers = [
            threading.Thread(target=self._write_lane, args=(lane, stop), name=f"mqtt-writer-{i}")
            for i, lane in enumerate(self._lanes)
        ]
        for writer in writers:
            writer.start()
        try:
            while not stop.wait(10):
                if self.retiring:
                    continue  # retire() watches and stops
                s = self.stats
                log.info(
                    "mqtt: %d messages (%d rejected), %d samples accepted, %d duplicates",
                    s.messages,
                    s.rejected,
                    s.accepted,
                    s.duplicates,
                )
        finally:
            stop.set()
            for writer in writers:
                writer.join()
            self._closing.set()
            with self._lock:
                if self._connection is not None:
                    self._connection.close(disconnect=True, end_session=self._drained())
            network.join(10)

    def retire(self, stop: threading.Event, quiet: float = 2.0) -> bool:
        """Retire this consumer's session (scaling down): leave the shared subscription, so the
        broker routes nothing more to it; write and acknowledge every message the session
        still holds (queued while it was away, or in flight); once `quiet` seconds pass with
        nothing new and everything acknowledged, disconnect with session expiry 0, and the
        broker forgets the session. True when retired; False when stopped first (the session
        is kept, nothing lost)."""
        self.retiring = True
        idle = threading.Event()
        watcher = threading.Thread(target=self._watch_drain, args=(stop, idle, quiet))
        watcher.start()
        self.run(stop)
        watcher.join()
        return idle.is_set()

    def _watch_drain(self, stop: threading.Event, idle: threading.Event, quiet: float) -> None:
        since = time.monotonic()
        seen = -1
        while not stop.wait(0.1):
            now = time.monotonic()
            arrived = self._arrived_total
            if arrived != seen or not self._drained():
                seen, since = arrived, now
            elif now - since >= quiet:
                idle.set()
                stop.set()

    def _drained(self) -> bool:
        """Retiring, unsubscribed, and every message received acknowledged."""
        return self.retiring and self.unsubscribed.is_set() and not self._arrived

    def _write_lane(self, lane: queue.SimpleQueue[_Message], stop: threading.Event) -> None:
        """One writer: batches of its lane, one after the other, on its own connection."""
        try:
            while not stop.is_set():
                messages = self._collect(lane, stop)
                if messages:
                    self._process(messages, stop)
        except BaseException:
            log.exception("mqtt: a writer failed; the consumer stops")
            stop.set()
            raise
        finally:
            connections.close_all()  # this thread's

    def _collect(self, lane: queue.SimpleQueue[_Message], stop: threading.Event) -> list[_Message]:
        """Up to batch_samples samples' worth of messages (a message's payload bytes stand in
        for its samples until it is parsed: ~40 bytes a sample), or what came within `linger`
        of the first."""
        try:
            first = lane.get(timeout=0.2)
        except queue.Empty:
            return []
        messages = [first]
        budget = self.batch_samples * 40 - len(first.payload)
        deadline = first.received + self.linger
        while budget > 0 and not stop.is_set():
            wait = deadline - time.monotonic()
            try:
                message = lane.get(timeout=wait) if wait > 0 else lane.get_nowait()
            except queue.Empty:
                break
            messages.append(message)
            budget -= len(message.payload)
        return messages

    # --- one batch ---------------------------------------------------------------------------

    def _process(self, messages: list[_Message], stop: threading.Event) -> None:
        started = time.monotonic()
        now = timezone.now()
        by_tenant: dict[str, list[tuple[_Message, str]]] = defaultdict(list)
        rejected: list[tuple[_Message, ApiError]] = []
        for message in messages:
            try:
                topic = parse_topic(message.topic)
            except ApiError as exc:
                rejected.append((message, exc))
                continue
            by_tenant[topic.tenant_id].append((message, topic.device_id))
        good = {
            tenant: group
            for tenant, items in by_tenant.items()
            if (group := self._validate(items, now, rejected)) is not None
        }
        if good and not self._retrying(lambda: self._check_tenants(good, rejected), stop):
            return
        for tenant, group in good.items():
            if not self._retrying(partial(self._write_tenant, tenant, group, rejected), stop):
                return  # stopping while the database is down: nothing acknowledged
        answered: set[int] = set()  # a retried batch may have refused a message twice
        for message, error in rejected:
            if id(message) not in answered:
                answered.add(id(message))
                self._reject(message, error)
        for message in messages:
            message.done = True
        self._ack()
        MQTT_MESSAGES.labels("written").inc(len(messages) - len(answered))
        MQTT_BATCH_SECONDS.observe(time.monotonic() - started)
        MQTT_LAG_SECONDS.set(time.monotonic() - messages[0].received)
        with self._stats_lock:
            self.stats.batches += 1
            self.stats.messages += len(messages)

    @staticmethod
    def _parse(message: _Message, device_id: str, now: datetime) -> Batch:
        return parse_payload(
            device_id,
            message.payload,
            now,
            settings.MQTT_MAX_PAYLOAD,
            settings.INGEST_MAX_SAMPLES,
        )

    def _validate(
        self,
        items: list[tuple[_Message, str]],
        now: datetime,
        rejected: list[tuple[_Message, ApiError]],
    ) -> _Group | None:
        """A tenant's messages validated together (the common case: all valid); when any is
        not, each on its own, so that only the bad ones are rejected, each with its reason."""
        together = parse_together(
            [(device_id, m.payload) for m, device_id in items],
            now,
            settings.MQTT_MAX_PAYLOAD,
            settings.INGEST_MAX_SAMPLES,
        )
        if together is not None:
            return _Group([m for m, _ in items], [d for _, d in items], together)
        kept: list[tuple[_Message, str]] = []
        batches: list[Batch] = []
        for message, device_id in items:
            try:
                batches.append(self._parse(message, device_id, now))
            except ApiError as exc:
                rejected.append((message, exc))
                continue
            kept.append((message, device_id))
        if not kept:
            return None
        return _Group([m for m, _ in kept], [d for _, d in kept], concat(batches))

    def _check_tenants(
        self, good: dict[str, _Group], rejected: list[tuple[_Message, ApiError]]
    ) -> None:
        """Reject messages for a tenant that does not exist (only the consumer's or an admin's
        credential could publish there: the broker's ACLs name existing tenants)."""
        unknown = set(good) - self._known_tenants
        if unknown:
            ids = [uuid.UUID(t) for t in unknown]
            found = {str(t) for t in Tenant.objects.filter(id__in=ids).values_list("id", flat=True)}
            self._known_tenants |= found
            for tenant in unknown - found:
                for message in good.pop(tenant).messages:
                    rejected.append(
                        (message, ApiError(404, "unknown_tenant", f"no tenant {tenant}"))
                    )

    def _write_tenant(
        self, tenant: str, group: _Group, rejected: list[tuple[_Message, ApiError]]
    ) -> None:
        """All of a tenant's messages in one transaction. When the database refuses the batch
        for its content (a point's kind; a statement error no check foresaw), each message on
        its own, so that only the bad one is rejected; an error that is the database's state
        (unreachable, a deadlock) propagates, and the batch is retried."""
        try:
            self._count(self._write(tenant, group.batch))
            return
        except (ApiError, DatabaseError, psycopg.Error) as exc:
            if _transient(exc):
                raise
            if len(group.messages) == 1:
                rejected.append((group.messages[0], _refusal(exc)))
                return
        now = timezone.now()
        for message, device_id in zip(group.messages, group.devices, strict=True):
            try:
                self._count(self._write(tenant, self._parse(message, device_id, now)))
            except (ApiError, DatabaseError, psycopg.Error) as exc:
                if _transient(exc):
                    raise
                rejected.append((message, _refusal(exc)))

    @staticmethod
    def _write(tenant: str, batch: Batch) -> WriteResult:
        with tenant_context(tenant):
            return write_samples(batch)

    def _count(self, result: WriteResult) -> None:
        with self._stats_lock:
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
        with self._stats_lock:
            self.stats.rejected += 1
        MQTT_MESSAGES.labels("rejected").inc()
        MQTT_REJECTED.labels(error.code).inc()
        log.info("mqtt: rejected a message on %s: %s", message.topic, error.message)
        errors_topic = _errors_topic(message.topic)
        if errors_topic is None:
            return
        body = orjson.dumps({"error": {"code": error.code, "message": error.message}})
        with self._lock:
            connection = self._connection
            if connection is None:
                return  # the device learns nothing; its message is redelivered and judged again
            # QoS 1 while the broker's Receive Maximum allows another in flight, else QoS 0
            # (an answer is a notice to the device: losing one to a full window or a reconnect
            # loses no data).
            if len(self._in_flight) < connection.connack.receive_max:
                self._packet_id = self._packet_id % 65535 + 1
                while self._packet_id in self._in_flight:
                    self._packet_id = self._packet_id % 65535 + 1
                self._in_flight.add(self._packet_id)
                packet = mqtt5.PublishPacket(
                    errors_topic, body, qos=mqtt5.QoS.AT_LEAST_ONCE, packet_id=self._packet_id
                )
            else:
                packet = mqtt5.PublishPacket(errors_topic, body)
            # On an error the network thread sees the connection drop and reconnects.
            with contextlib.suppress(OSError):
                connection.send(packet.write())

    def _ack(self) -> None:
        """PUBACK, in the order they arrived (MQTT 5 §4.6), every message that is done and has
        no undone message before it, as one write (4 bytes each when the reason is success,
        §3.4.2.1): a lane that is ahead waits for the others. Messages of an earlier connection
        are not acknowledged: their packet ids mean nothing to this one, and the broker
        redelivers them."""
        with self._ack_lock:
            arrived = self._arrived
            ready: list[_Message] = []
            while arrived and arrived[0].done:
                ready.append(arrived.popleft())
            with self._lock:
                generation = self._generation
                connection = self._connection
                mids = [m.mid for m in ready if m.generation == generation and m.mid is not None]
                if connection is None or not mids:
                    return
                # Dropped on an error: the broker redelivers them on the next connection.
                with contextlib.suppress(OSError):
                    connection.send(b"".join(map(_puback, mids)))

    # --- the network thread ------------------------------------------------------------------

    def _connect_packet(self) -> mqtt5.ConnectPacket:
        return mqtt5.ConnectPacket(
            self.client_id,
            username=self.url.username,
            password=self.url.password.encode(),
            clean_start=False,
            keep_alive=KEEP_ALIVE,
            session_expiry_interval=settings.MQTT_SESSION_EXPIRY,
            receive_max=RECEIVE_MAXIMUM,
        )

    def _network(self) -> None:
        """Connect, subscribe, receive until the connection drops; again, with a growing
        pause, until the consumer closes."""
        attempt = 0
        while not self._closing.is_set():
            try:
                connection = Connection.open(self.url.host, self.url.port, self._connect_packet())
            except (OSError, Refused, ProtocolError) as exc:
                what = "refused the consumer" if isinstance(exc, Refused) else "is unreachable"
                log.error("mqtt: the broker at %s %s: %s", self.url, what, exc)
                pause = _RECONNECT_PAUSES[min(attempt, len(_RECONNECT_PAUSES) - 1)]
                attempt += 1
                self._closing.wait(pause)
                continue
            attempt = 0
            with self._lock:
                if self._closing.is_set():
                    connection.close(disconnect=True)
                    return
                self._connection = connection
                self._in_flight.clear()
                generation = self._generation
            log.info(
                "mqtt: connected to %s as %s (session %s)",
                self.url,
                self.client_id,
                "resumed" if connection.connack.session_present else "new",
            )
            self.connected.set()
            try:
                if self.retiring:
                    leave = mqtt5.UnsubscribePacket(1, [SHARED_SUBSCRIPTION])
                    connection.send(leave.write())
                else:
                    # Subscribing again on a resumed session is harmless and covers a session
                    # that expired.
                    topic = mqtt5.TopicFilter(SHARED_SUBSCRIPTION, max_qos=mqtt5.QoS.AT_LEAST_ONCE)
                    connection.send(mqtt5.SubscribePacket(1, [topic]).write())
                self._receive(connection, generation)
            except (OSError, ProtocolError) as exc:
                if not self._closing.is_set():
                    log.warning("mqtt: disconnected from %s (%s); reconnecting", self.url, exc)
            finally:
                with self._lock:
                    self._generation += 1
                    self._connection = None
                self.connected.clear()
                self.subscribed.clear()
                connection.close()

    def _receive(self, connection: Connection, generation: int) -> None:
        keep_alive = connection.connack.server_keep_alive or KEEP_ALIVE
        pinged: float | None = None  # when our unanswered PINGREQ went out
        lanes = self._lanes
        while not self._closing.is_set():
            packets = connection.read(timeout=1.0)
            now = time.monotonic()
            for packet in packets:
                if isinstance(packet, mqtt5.PublishPacket):
                    message = _Message(
                        generation, packet.packet_id, packet.topic, packet.payload, now
                    )
                    self._arrived.append(message)
                    self._arrived_total += 1
                    lanes[hash(packet.topic) % len(lanes)].put(message)
                elif isinstance(packet, mqtt5.PubAckPacket):
                    with self._lock:
                        self._in_flight.discard(packet.packet_id)
                elif isinstance(packet, mqtt5.PingRespPacket):
                    pinged = None
                elif isinstance(packet, mqtt5.SubAckPacket):
                    self._on_suback(packet)
                elif isinstance(packet, mqtt5.UnsubAckPacket):
                    self.unsubscribed.set()
                elif isinstance(packet, mqtt5.DisconnectPacket):
                    raise ProtocolError(f"the broker disconnected us: {packet.reason_code.name}")
            now = time.monotonic()
            if pinged is not None and now - pinged > keep_alive:
                raise ProtocolError(f"no PINGRESP within {keep_alive} s")
            if pinged is None and now - connection.last_sent > keep_alive / 2:
                pinged = now
                connection.send(mqtt5.PingReqPacket().write())

    def _on_suback(self, packet: mqtt5.SubAckPacket) -> None:
        if any(code.value >= 0x80 for code in packet.reason_codes):
            names = ", ".join(code.name.lower() for code in packet.reason_codes)
            log.error(
                "mqtt: the broker refused the subscription %s: %s", SHARED_SUBSCRIPTION, names
            )
            return
        self.subscribed.set()


def _puback(mid: int) -> bytes:
    return _PUBACK.pack(0x40, 2, mid)


_PUBACK = struct.Struct(">BBH")  # fixed header (PUBACK), remaining length 2, packet id


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
