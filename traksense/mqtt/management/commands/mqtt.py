"""traksense mqtt: the ingest consumer; `mqtt broker`, a development broker; `mqtt credential`,
device credentials on the broker (docs/mqtt.md)."""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
import uuid
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from traksense.mqtt import broker, credentials
from traksense.mqtt.consumer import Consumer
from traksense.mqtt.control import ControlError
from traksense.mqtt.url import BrokerUrl, parse_url
from traksense.observability.views import serve_metrics
from traksense.tenancy.models import Tenant


class Command(BaseCommand):
    help = "Run the MQTT ingest consumer (MQTT_URL); `broker` and `credential` subcommands."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--client-id", help="session name at the broker (MQTT_CLIENT_ID)")
        parser.add_argument(
            "--retire",
            action="store_true",
            help="scale down: leave the shared subscription, write what this session still"
            " holds, then end the session at the broker",
        )
        parser.add_argument(
            "--metrics-port",
            type=int,
            default=None,
            help="serve this consumer's Prometheus metrics on this port (MQTT_METRICS_PORT;"
            " default off: under `serve` they are in the API's /metrics)",
        )
        sub = parser.add_subparsers(dest="action")
        run = sub.add_parser("broker", help="run a development Mosquitto in the foreground")
        run.add_argument("--port", type=int, default=None, help="default MQTT_PORT (1883)")
        cred = sub.add_parser("credential", help="device and gateway credentials")
        csub = cred.add_subparsers(dest="credential_action", required=True)
        create = csub.add_parser("create", help="print a new credential's username and password")
        create.add_argument("--tenant", required=True, type=uuid.UUID)
        create.add_argument("--device", type=uuid.UUID, help="only this device (default: any)")
        listing = csub.add_parser("list", help="a tenant's credentials")
        listing.add_argument("--tenant", required=True, type=uuid.UUID)
        revoke = csub.add_parser("revoke", help="delete a credential and disconnect its client")
        revoke.add_argument("username")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options.get("action")
        try:
            if action == "broker":
                self._broker(options["port"] or settings.MQTT_PORT)
            elif action == "credential":
                self._credential(options)
            else:
                metrics_port = options.get("metrics_port")
                self._consume(
                    options.get("client_id"),
                    options.get("retire", False),
                    settings.MQTT_METRICS_PORT if metrics_port is None else metrics_port,
                )
        except (ControlError, broker.BrokerError) as exc:
            raise CommandError(str(exc)) from None

    def _consume(self, client_id: str | None, retire: bool, metrics_port: int = 0) -> None:
        if not settings.MQTT_URL:
            raise CommandError(
                "MQTT_URL is not set (mqtt://USER:PASS@HOST:PORT); `traksense mqtt broker`"
                " runs a development broker and prints the line to use"
            )
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", force=True)
        consumer = Consumer(parse_url(settings.MQTT_URL), client_id)
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        if retire:
            self.stdout.write(
                f"retiring session {consumer.client_id} at {consumer.url}: writing what it holds"
            )
            self.stdout.flush()
            if not consumer.retire(stop):
                raise CommandError(
                    f"stopped before session {consumer.client_id} was drained; it is kept"
                    " (nothing lost): run --retire again"
                )
            self.stdout.write(
                f"retired session {consumer.client_id}: {consumer.stats.messages} messages"
                " written, session ended"
            )
            return
        if metrics_port:
            serve_metrics(metrics_port, settings.MQTT_METRICS_HOST)
            self.stdout.write(
                f"metrics on http://{settings.MQTT_METRICS_HOST}:{metrics_port}/metrics"
            )
        self.stdout.write(f"consuming from {consumer.url} as {consumer.client_id} (Ctrl-C stops)")
        self.stdout.flush()
        consumer.run(stop)
        self.stdout.write("stopped")

    def _broker(self, port: int) -> None:
        directory = _broker_dir()
        admin, consumer = broker.prepare(directory, port)
        process = broker.start(directory, port)
        try:
            broker.ensure_consumer(admin, consumer)
            self.stdout.write(f"mosquitto on 127.0.0.1:{port}, files in {directory}")
            self.stdout.write(f"log: {directory / 'mosquitto.log'}")
            self.stdout.write(
                f"MQTT_URL=mqtt://{consumer.username}:{consumer.password}@127.0.0.1:{port}"
            )
            self.stdout.flush()
            stopping: list[int] = []
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda n, _f: stopping.append(n))
            while not stopping and process.poll() is None:
                time.sleep(0.5)
        finally:
            if process.poll() is None:
                process.terminate()
                process.wait(10)
        if process.returncode not in (0, -signal.SIGTERM):
            sys.exit(f"mosquitto exited with {process.returncode}; see its log")

    def _credential(self, options: dict[str, Any]) -> None:
        admin = _admin_url()
        action = options["credential_action"]
        if action == "create":
            tenant = options["tenant"]
            if not Tenant.objects.filter(id=tenant).exists():
                raise CommandError(f"no tenant {tenant}")
            username, password = credentials.create(admin, tenant, options["device"])
            self.stdout.write(username)
            self.stdout.write(password)
        elif action == "list":
            for c in credentials.list_for(admin, options["tenant"]):
                self.stdout.write(f"{c.username}\t{c.tenant_id}\t{c.device_id or '*'}")
        else:
            revoked = credentials.revoke(admin, options["username"])
            self.stderr.write(f"revoked {revoked.username} (tenant {revoked.tenant_id})")


def _broker_dir() -> Path:
    return Path(settings.TRAKSENSE_HOME) / "mosquitto"


def _admin_url() -> BrokerUrl:
    if settings.MQTT_ADMIN_URL:
        return parse_url(settings.MQTT_ADMIN_URL, "MQTT_ADMIN_URL")
    found = broker.admin_url(_broker_dir())
    if found is None:
        raise CommandError(
            "MQTT_ADMIN_URL is not set and no development broker was made here"
            " (`traksense mqtt broker`)"
        )
    return found
