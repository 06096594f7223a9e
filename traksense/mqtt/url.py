"""`mqtt://USER:PASS@HOST:PORT` → the parts a paho client needs (MQTT_URL, MQTT_ADMIN_URL)."""

from __future__ import annotations

from typing import NamedTuple
from urllib.parse import unquote, urlsplit

from traksense.configerror import ConfigError


class BrokerUrl(NamedTuple):
    host: str
    port: int
    username: str
    password: str

    def __str__(self) -> str:
        """The URL without its password, for logs and messages."""
        return f"mqtt://{self.username}@{self.host}:{self.port}"


def parse_url(url: str, name: str = "MQTT_URL") -> BrokerUrl:
    parts = urlsplit(url)
    if parts.scheme != "mqtt":
        raise ConfigError(f"{name} must be mqtt://USER:PASS@HOST:PORT, got scheme {parts.scheme!r}")
    try:
        port = parts.port or 1883
    except ValueError:
        raise ConfigError(f"{name} has an invalid port") from None
    if not parts.hostname or not parts.username:
        raise ConfigError(f"{name} must name a host and a user: mqtt://USER:PASS@HOST:PORT")
    return BrokerUrl(parts.hostname, port, unquote(parts.username), unquote(parts.password or ""))
