from __future__ import annotations

from django.urls import path

from traksense.observability import explorer, status
from traksense.observability import views as observability
from traksense.points import openapi, read
from traksense.points import views as points

urlpatterns = [
    path("data/points", points.data_points),
    path("data/query", read.data_query),
    path("data/series", read.data_series),
    path("data/devices", read.data_devices),
    path("openapi.json", openapi.openapi_json),
    path("healthz", observability.healthz),
    path("metrics", observability.metrics),
    path("status", status.status_page),
    path("status/login", status.login),
    path("status/logout", status.logout),
    path("explorer", explorer.explorer),
    path("static/traksense/<str:name>", explorer.asset),
]

handler400 = "traksense.core.errors.malformed"
handler404 = "traksense.core.errors.not_found"
handler500 = "traksense.core.errors.server_error"
