from __future__ import annotations

from pathlib import Path

from django.db import migrations

SQL = (Path(__file__).parent / "0004_raw_compression.sql").read_text()


class Migration(migrations.Migration):
    dependencies = [("tsdb", "0003_compression_scaled")]
    operations = [migrations.RunSQL(SQL)]
