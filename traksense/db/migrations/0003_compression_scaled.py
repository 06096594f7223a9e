from __future__ import annotations

from pathlib import Path

from django.db import migrations

SQL = (Path(__file__).parent / "0003_compression_scaled.sql").read_text()


class Migration(migrations.Migration):
    dependencies = [("tsdb", "0002_compression")]
    operations = [migrations.RunSQL(SQL)]
