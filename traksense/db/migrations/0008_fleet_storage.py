from __future__ import annotations

from pathlib import Path

from django.db import migrations

SQL = (Path(__file__).parent / "0008_fleet_storage.sql").read_text()


class Migration(migrations.Migration):
    dependencies = [("tsdb", "0007_tenant_binding")]
    operations = [migrations.RunSQL(SQL)]
