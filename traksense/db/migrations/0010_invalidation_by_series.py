from __future__ import annotations

from pathlib import Path

from django.db import migrations

SQL = (Path(__file__).parent / "0010_invalidation_by_series.sql").read_text()


class Migration(migrations.Migration):
    dependencies = [("tsdb", "0009_state_rollups")]
    operations = [migrations.RunSQL(SQL)]
