"""The point explorer page and the static assets shipped in the package.

The page itself holds no data and needs no credential: the browser keeps the tenant's API key in
sessionStorage and fetches everything from the tenant API (GET /data/series, GET /data/points)
with it, so the explorer sees exactly what the key may see. Assets are served by this small view
rather than by django.contrib.staticfiles: there are three files, and no collectstatic step or
web server configuration is needed in production.
"""

from __future__ import annotations

from pathlib import Path

from django.http import Http404, HttpRequest, HttpResponse
from django.template.loader import render_to_string

STATIC_DIR = Path(__file__).resolve().parent / "static" / "traksense"
# Only these files are served: the name never reaches the filesystem unchecked.
ASSETS = {
    "traksense.css": "text/css; charset=utf-8",
    "explorer.js": "text/javascript; charset=utf-8",
}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def explorer(request: HttpRequest) -> HttpResponse:
    if request.method not in ("GET", "HEAD"):
        return HttpResponse(status=405, headers={"Allow": "GET, HEAD"})
    response = HttpResponse(render_to_string("traksense/explorer.html"))
    response["Content-Security-Policy"] = CSP
    response["X-Content-Type-Options"] = "nosniff"
    # The key may sit in the fragment of the URL: never send the URL to another origin.
    response["Referrer-Policy"] = "no-referrer"
    return response


def asset(request: HttpRequest, name: str) -> HttpResponse:
    content_type = ASSETS.get(name)
    if content_type is None:
        raise Http404(name)
    response = HttpResponse((STATIC_DIR / name).read_bytes(), content_type=content_type)
    response["Cache-Control"] = "public, max-age=300"
    response["X-Content-Type-Options"] = "nosniff"
    return response
