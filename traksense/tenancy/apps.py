from __future__ import annotations

from django.apps import AppConfig


class TenancyConfig(AppConfig):
    name = "traksense.tenancy"
    label = "tenancy"
    default_auto_field = "django.db.models.BigAutoField"
