"""traksense demo: simulated HVAC devices reporting every second through the real write path."""

from __future__ import annotations

import math
import random
import time
import uuid
from argparse import ArgumentParser
from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from traksense.db.context import tenant_context
from traksense.ingest.parse import Batch
from traksense.ingest.write import write_samples
from traksense.tenancy.keys import create_key
from traksense.tenancy.models import Tenant

# Stable ids, so that running the demo again extends the same series.
NAMESPACE = uuid.UUID("5b0c3c5e-7f43-4a4e-9d0e-2f1f6f4f7a10")
POINTS = ("supply_temp_c", "humidity_pct", "fan_on", "mode")


def device_id(n: int) -> str:
    return str(uuid.uuid5(NAMESPACE, f"device-{n}"))


def point_id(name: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"point-{name}"))


class Command(BaseCommand):
    help = "Simulate HVAC devices writing a sample per point every interval (Ctrl-C stops)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--tenant", help="tenant id (default: a tenant named 'demo')")
        parser.add_argument("--devices", type=int, default=3)
        parser.add_argument("--interval", type=float, default=1.0, help="seconds between rounds")
        parser.add_argument("--rounds", type=int, default=0, help="stop after N rounds (0: never)")

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = self._tenant(options["tenant"])
        devices = [device_id(n) for n in range(options["devices"])]
        self.stdout.write(f"tenant {tenant.id}: {len(devices)} devices × {len(POINTS)} points")
        for device in devices:
            self.stdout.write(f"  device {device}")
        for name in POINTS:
            self.stdout.write(f"  point {point_id(name)}  {name}")
        rounds = 0
        try:
            while not options["rounds"] or rounds < options["rounds"]:
                result = self._round(tenant.id, devices, datetime.now(UTC))
                rounds += 1
                self.stdout.write(f"round {rounds}: {result.accepted} samples written")
                time.sleep(options["interval"])
        except KeyboardInterrupt:
            self.stdout.write("stopped")

    def _tenant(self, tenant_id: str | None) -> Tenant:
        if tenant_id:
            tenant = Tenant.objects.filter(id=tenant_id).first()
            if tenant is None:
                raise CommandError(f"no tenant {tenant_id}")
            return tenant
        tenant = Tenant.objects.filter(name="demo").order_by("created_at").first()
        if tenant is None:
            tenant = Tenant.objects.create(name="demo")
            self.stdout.write(f"created tenant 'demo'; API key (shown once): {create_key(tenant)}")
        return tenant

    def _round(self, tenant: uuid.UUID, devices: list[str], now: datetime) -> Any:
        phase = now.timestamp() / 600 * 2 * math.pi  # a 10-minute cycle
        devs: list[str] = []
        pts: list[str] = []
        nums: list[float | None] = []
        bools: list[bool | None] = []
        texts: list[str | None] = []
        for n, device in enumerate(devices):
            temp = 18 + 3 * math.sin(phase + n) + random.gauss(0, 0.1)
            values: tuple[Any, ...] = (
                round(temp, 3),
                round(45 + 10 * math.cos(phase + n) + random.gauss(0, 0.5), 2),
                temp > 18,
                "cooling" if temp > 19 else "idle",
            )
            for name, value in zip(POINTS, values, strict=True):
                devs.append(device)
                pts.append(point_id(name))
                nums.append(value if isinstance(value, float) else None)
                bools.append(value if isinstance(value, bool) else None)
                texts.append(value if isinstance(value, str) else None)
        batch = Batch(devs, pts, [now] * len(devs), nums, bools, texts)
        with tenant_context(tenant):
            return write_samples(batch)
