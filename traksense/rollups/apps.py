from __future__ import annotations

from django.apps import AppConfig


class RollupsConfig(AppConfig):
    name = "traksense.rollups"
    label = "rollups"
