"""A client of Mosquitto's dynamic-security plugin: commands published as JSON to
`$CONTROL/dynamic-security/v1`, answers read from `.../response` (the plugin's README,
"Control topic"). Each command carries a correlationData of ours, so that answers to other
admins' commands on the same response topic are told apart.
"""

from __future__ import annotations

import threading
import uuid
from types import TracebackType
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from traksense.mqtt.url import BrokerUrl

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = CONTROL_TOPIC + "/response"


class ControlError(Exception):
    """The broker refused a command (its `error` text), or could not be reached."""


class Control:
    """`with Control(url) as control: control.run({"command": ...}, ...)`."""

    def __init__(self, url: BrokerUrl, timeout: float = 10.0) -> None:
        self.url = url
        self.timeout = timeout
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"traksense-admin-{uuid.uuid4().hex[:12]}",
            protocol=mqtt.MQTTv5,
        )
        self._client.username_pw_set(url.username, url.password)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._ready = threading.Event()
        self._refused: str | None = None
        self._lock = threading.Lock()
        self._answers: dict[str, dict[str, Any]] = {}
        self._arrived = threading.Condition(self._lock)

    def __enter__(self) -> Control:
        try:
            self._client.connect(self.url.host, self.url.port, keepalive=30)
        except OSError as exc:
            raise ControlError(f"cannot reach the MQTT broker at {self.url}: {exc}") from None
        self._client.loop_start()
        if not self._ready.wait(self.timeout) or self._refused:
            self.__exit__(None, None, None)
            why = self._refused or "no answer"
            raise ControlError(f"the MQTT broker at {self.url} refused the admin: {why}")
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def run(self, *commands: dict[str, Any], allow: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        """Send `commands` in one message; return their answers in order. An answer whose error
        text contains one of `allow` (e.g. "already exists") is returned; any other error
        raises ControlError."""
        tag = uuid.uuid4().hex
        sent = [{**c, "correlationData": f"{tag}-{i}"} for i, c in enumerate(commands)]
        self._client.publish(CONTROL_TOPIC, orjson.dumps({"commands": sent}), qos=1)
        keys = [c["correlationData"] for c in sent]
        with self._arrived:
            if not self._arrived.wait_for(
                lambda: all(k in self._answers for k in keys), self.timeout
            ):
                raise ControlError("the MQTT broker did not answer the dynamic-security command")
            answers = [self._answers.pop(k) for k in keys]
        for command, answer in zip(commands, answers, strict=True):
            error = answer.get("error")
            if error and not any(a in error for a in allow):
                raise ControlError(f"{command['command']}: {error}")
        return answers

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        if reason.is_failure:
            self._refused = str(reason)
            self._ready.set()
            return
        client.subscribe(RESPONSE_TOPIC, qos=1)

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reasons: list[ReasonCode], props: Any
    ) -> None:
        if any(r.is_failure for r in reasons):
            self._refused = "not allowed to read the dynamic-security responses"
        self._ready.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            doc = orjson.loads(message.payload)
        except orjson.JSONDecodeError:
            return
        with self._arrived:
            for answer in doc.get("responses", []):
                key = answer.get("correlationData")
                if isinstance(key, str):
                    self._answers[key] = answer
            self._arrived.notify_all()
