from __future__ import annotations

from pathlib import Path

from django.db import migrations

SQL = (Path(__file__).parent / "0007_tenant_binding.sql").read_text()


class Migration(migrations.Migration):
    dependencies = [("tsdb", "0005_invalidation_threshold")]
    operations = [migrations.RunSQL(SQL)]
