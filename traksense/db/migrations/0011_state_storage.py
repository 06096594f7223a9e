from __future__ import annotations

from pathlib import Path

from django.db import migrations

SQL = (Path(__file__).parent / "0011_state_storage.sql").read_text()


class Migration(migrations.Migration):
    dependencies = [("tsdb", "0010_invalidation_by_series")]
    operations = [migrations.RunSQL(SQL)]
