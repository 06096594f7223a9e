from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class DbConfig(AppConfig):
    name = "traksense.db"
    label = "tsdb"
    verbose_name = "TrakSense database objects"

    def ready(self) -> None:
        post_migrate.connect(_apply_sql, sender=self)


def _apply_sql(using: str, **kwargs: Any) -> None:
    # Views and functions are idempotent definitions re-applied after every migrate, so that
    # changing one is an edit of its .sql file rather than a new migration.
    from traksense.db.sqlfiles import apply_definitions
    from traksense.db.webrole import ensure_web_role
    from traksense.rollups.jobs import JOBS
    from traksense.rollups.runner import sync_jobs

    apply_definitions(using)
    _sync_state_config(using)
    if using == "default":
        ensure_web_role(using)
        # Jobs that exist by configuration (compress_raw, on by default) are listed from the
        # start, like the ones migration rollups/0001_jobs registers.
        sync_jobs(JOBS)


def _sync_state_config(using: str) -> None:
    from django.conf import settings
    from django.db import connections

    with connections[using].cursor() as cursor:
        cursor.execute(
            "UPDATE ts_state_config SET max_gap = make_interval(secs => %s)"
            " WHERE max_gap <> make_interval(secs => %s)",
            [settings.STATE_MAX_GAP_SECONDS, settings.STATE_MAX_GAP_SECONDS],
        )
