from __future__ import annotations

from pathlib import Path

from django.db import migrations

SQL = (Path(__file__).parent / "0009_state_rollups.sql").read_text()


class Migration(migrations.Migration):
    dependencies = [("tsdb", "0008_fleet_storage")]
    operations = [migrations.RunSQL(SQL)]
