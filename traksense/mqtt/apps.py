from __future__ import annotations

from django.apps import AppConfig


class MqttConfig(AppConfig):
    name = "traksense.mqtt"
    label = "mqtt"
