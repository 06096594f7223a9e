"""HTTP views of /data/points: GET reads a series, POST ingests samples."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from traksense.core.errors import error_response


@csrf_exempt
def data_points(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        from traksense.ingest.views import post_points

        return post_points(request)
    if request.method == "GET":
        from traksense.points.read import get_points

        return get_points(request)
    return error_response(405, "method_not_allowed", "use GET or POST")
