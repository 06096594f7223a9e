from __future__ import annotations

from django.apps import AppConfig


class PointsConfig(AppConfig):
    name = "traksense.points"
    label = "points"
