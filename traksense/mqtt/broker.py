"""A Mosquitto broker for development and tests: its files under a directory of ours, its
dynamic-security plugin, an admin client and the consumer's client.

Files in `directory` (TRAKSENSE_HOME/mosquitto for `traksense mqtt broker`):
- mosquitto.conf, written on every start (the port may change);
- dynamic-security.json, the plugin's state (clients, roles), made once by `mosquitto_ctrl
  dynsec init` and then kept by the plugin;
- admin.secret and consumer.secret, the two passwords this module made (mode 0600), and
  port, the one it last started on;
- mosquitto.db (persistent sessions and their queued messages) and mosquitto.log.

The admin's role is narrowed to the dynamic-security and $SYS topics: it manages credentials and
reads no tenant's data. The consumer's role may take the shared subscription on every tenant's
uplink topics and publish to every error topic; nobody else may (DESIGN §8, docs/mqtt.md).
"""

from __future__ import annotations

import getpass
import glob
import os
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import orjson

from traksense.mqtt.control import Control
from traksense.mqtt.url import BrokerUrl

ADMIN_USER = "admin"
CONSUMER_USER = "traksense"
CONSUMER_ROLE = "traksense-consumer"
SHARED_SUBSCRIPTION = "$share/traksense/ts/+/+/up"
# Where Debian and other distributions put the plugin; MQTT_DYNSEC_PLUGIN overrides.
_PLUGIN_GLOBS = (
    "/usr/lib/*/mosquitto_dynamic_security.so",
    "/usr/lib/mosquitto_dynamic_security.so",
    "/usr/local/lib/mosquitto_dynamic_security.so",
    "/usr/lib/mosquitto/mosquitto_dynamic_security.so",
)

# Limits of the development broker. Mosquitto's defaults (20 messages in flight per client, 1000
# queued for an offline session) would cap the consumer's batches and drop what a consumer that
# is down for more than a second of fleet traffic should find when it returns.
_CONFIG = """\
# Written by `traksense mqtt broker` on every start; edit the code, not this file.
per_listener_settings false
listener {port} 127.0.0.1
# Run as root, mosquitto would switch to the user "mosquitto", who cannot write here.
user {user}
allow_anonymous false
plugin {plugin}
plugin_opt_config_file {directory}/dynamic-security.json
persistence true
persistence_location {directory}/
persistence_file mosquitto.db
autosave_interval 30
persistent_client_expiration 7d
max_inflight_messages 0
max_queued_messages 2000000
max_queued_bytes 0
max_packet_size 2097152
set_tcp_nodelay true
log_dest file {directory}/mosquitto.log
log_type error
log_type warning
log_type notice
log_type information
connection_messages true
"""


class BrokerError(Exception):
    """Mosquitto or its plugin is missing, or the broker did not start."""


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
    if not found:
        raise BrokerError(
            "mosquitto is not installed (Debian: apt-get install mosquitto mosquitto-clients)"
        )
    return found


def plugin_path() -> str:
    override = os.environ.get("MQTT_DYNSEC_PLUGIN", "").strip()
    candidates = [override] if override else [p for g in _PLUGIN_GLOBS for p in glob.glob(g)]
    for candidate in candidates:
        if Path(candidate).is_file():
            return candidate
    raise BrokerError(
        "Mosquitto's dynamic-security plugin (mosquitto_dynamic_security.so) was not found;"
        " set MQTT_DYNSEC_PLUGIN to its path"
    )


def prepare(directory: Path, port: int) -> tuple[BrokerUrl, BrokerUrl]:
    """Write the broker's files for `port` (the plugin's state only once); return the admin's
    and the consumer's URLs."""
    directory.mkdir(parents=True, exist_ok=True)
    admin_password = _secret(directory / "admin.secret")
    consumer_password = _secret(directory / "consumer.secret")
    state = directory / "dynamic-security.json"
    if not state.exists():
        ctrl = shutil.which("mosquitto_ctrl")
        if not ctrl:
            raise BrokerError("mosquitto_ctrl is not installed (Debian: package mosquitto-clients)")
        subprocess.run(
            [ctrl, "dynsec", "init", str(state), ADMIN_USER, admin_password],
            check=True,
            capture_output=True,
        )
        _narrow_admin(state)
    config = _CONFIG.format(
        port=port, plugin=plugin_path(), directory=directory, user=getpass.getuser()
    )
    (directory / "mosquitto.conf").write_text(config)
    (directory / "port").write_text(f"{port}\n")
    return (
        BrokerUrl("127.0.0.1", port, ADMIN_USER, admin_password),
        BrokerUrl("127.0.0.1", port, CONSUMER_USER, consumer_password),
    )


def admin_url(directory: Path) -> BrokerUrl | None:
    """The development broker's admin URL (at the port it last started on), when `prepare`
    made one in `directory`."""
    try:
        password = (directory / "admin.secret").read_text().strip()
        port = int((directory / "port").read_text())
    except FileNotFoundError:
        return None
    return BrokerUrl("127.0.0.1", port, ADMIN_USER, password)


def start(directory: Path, port: int, timeout: float = 15.0) -> subprocess.Popen[bytes]:
    """Start mosquitto on `directory`'s configuration; return once it accepts connections."""
    process = subprocess.Popen(
        [mosquitto_binary(), "-c", str(directory / "mosquitto.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            err = process.stderr.read().decode(errors="replace") if process.stderr else ""
            raise BrokerError(f"mosquitto exited ({process.returncode}): {err.strip()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise BrokerError(f"mosquitto did not listen on 127.0.0.1:{port} within {timeout:.0f} s")


def ensure_consumer(admin: BrokerUrl, consumer: BrokerUrl) -> None:
    """Create the consumer's role and client on the broker unless they exist; reset its
    password to `consumer`'s (so that the URL `prepare` returns always works)."""
    acls = [
        {"acltype": "subscribeLiteral", "topic": SHARED_SUBSCRIPTION, "allow": True},
        {"acltype": "unsubscribeLiteral", "topic": SHARED_SUBSCRIPTION, "allow": True},
        {"acltype": "publishClientReceive", "topic": "ts/+/+/up", "allow": True},
        {"acltype": "publishClientSend", "topic": "ts/+/+/errors", "allow": True},
    ]
    with Control(admin) as control:
        control.run(
            {"command": "createRole", "rolename": CONSUMER_ROLE, "acls": acls},
            {
                "command": "createClient",
                "username": consumer.username,
                "password": consumer.password,
                "textname": "TrakSense ingest consumer",
                "roles": [{"rolename": CONSUMER_ROLE}],
            },
            allow=("already exists",),
        )
        control.run(
            {
                "command": "setClientPassword",
                "username": consumer.username,
                "password": consumer.password,
            }
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _secret(path: Path) -> str:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        value = secrets.token_urlsafe(24)
        path.touch(mode=0o600)
        path.write_text(value + "\n")
        return value


def _narrow_admin(state: Path) -> None:
    """`mosquitto_ctrl dynsec init` lets its admin subscribe to `#`: keep only the control and
    $SYS topics, so that the credential that manages devices never reads their data."""
    doc: dict[str, Any] = orjson.loads(state.read_bytes())
    for role in doc.get("roles", []):
        if role.get("rolename") == ADMIN_USER:
            role["acls"] = [
                acl
                for acl in role.get("acls", [])
                if acl.get("topic", "").startswith(("$CONTROL/dynamic-security/", "$SYS/"))
            ]
    state.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
