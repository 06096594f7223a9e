"""The operator status page: jobs, rollup lag, tier sizes and compression, behind OPERATOR_TOKEN.

Credential: `Authorization: Bearer <OPERATOR_TOKEN>` (scripts, curl) or the login form, which
sets a signed, HttpOnly, SameSite=Strict cookie bound to the token's fingerprint (changing the
token logs every browser out). An empty OPERATOR_TOKEN disables the page: 404.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core import signing
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.loader import render_to_string

from traksense.core.humanize import human_bytes, human_seconds, human_size
from traksense.observability.health import MAX_LAG_SECONDS, check_health
from traksense.observability.statusdata import Snapshot, Table, read_snapshot

COOKIE = "traksense_operator"
COOKIE_PATH = "/status"
COOKIE_MAX_AGE = 12 * 3600
_SALT = "traksense.observability.status"
# Nothing on these pages is inline: scripts and styles come from our own packaged assets only.
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
BAR_WIDTH = 320  # px of the longest bar


def _fingerprint(token: str) -> str:
    return hashlib.sha256(b"traksense-operator:" + token.encode()).hexdigest()


def _given_token(request: HttpRequest) -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def operator_state(request: HttpRequest) -> str:
    """'ok', 'missing' (no credential: 401) or 'wrong' (a bad token: 403)."""
    token = settings.OPERATOR_TOKEN
    given = _given_token(request)
    if given is not None:
        return "ok" if hmac.compare_digest(given.encode(), token.encode()) else "wrong"
    cookie = request.COOKIES.get(COOKIE)
    if cookie:
        try:
            value = signing.loads(cookie, salt=_SALT, max_age=COOKIE_MAX_AGE)
        except signing.BadSignature:
            return "missing"
        if isinstance(value, str) and hmac.compare_digest(value, _fingerprint(token)):
            return "ok"
    return "missing"


def _page(template: str, context: dict[str, Any], status: int = 200) -> HttpResponse:
    response = HttpResponse(render_to_string(template, context), status=status)
    response["Content-Security-Policy"] = CSP
    response["Cache-Control"] = "no-store"
    response["X-Content-Type-Options"] = "nosniff"
    response["Referrer-Policy"] = "no-referrer"
    return response


def _disabled() -> HttpResponse:
    return _page("traksense/status_disabled.html", {}, status=404)


def _login_form(status: int, message: str = "") -> HttpResponse:
    response = _page("traksense/status_login.html", {"message": message}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="traksense-status"'
    return response


def status_page(request: HttpRequest) -> HttpResponse:
    if not settings.OPERATOR_TOKEN:
        return _disabled()
    if request.method not in ("GET", "HEAD"):
        return HttpResponse(status=405, headers={"Allow": "GET, HEAD"})
    state = operator_state(request)
    if state == "missing":
        return _login_form(401)
    if state == "wrong":
        return _login_form(403, "That operator token is not valid.")
    snapshot = read_snapshot()
    return _page("traksense/status.html", _context(snapshot, check_health()))


def login(request: HttpRequest) -> HttpResponse:
    token = settings.OPERATOR_TOKEN
    if not token:
        return _disabled()
    if request.method != "POST":
        return HttpResponse(status=405, headers={"Allow": "POST"})
    given = request.POST.get("token", "").strip()
    if not given or not hmac.compare_digest(given.encode(), token.encode()):
        return _login_form(403, "That operator token is not valid.")
    response = HttpResponseRedirect("/status", status=303)
    response.set_cookie(
        COOKIE,
        signing.dumps(_fingerprint(token), salt=_SALT),
        max_age=COOKIE_MAX_AGE,
        path=COOKIE_PATH,
        secure=request.is_secure(),
        httponly=True,
        samesite="Strict",
    )
    return response


def logout(request: HttpRequest) -> HttpResponse:
    if not settings.OPERATOR_TOKEN:
        return _disabled()
    if request.method != "POST":
        return HttpResponse(status=405, headers={"Allow": "POST"})
    response = HttpResponseRedirect("/status", status=303)
    response.delete_cookie(COOKIE, path=COOKIE_PATH, samesite="Strict")
    return response


# -- presentation ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    text: str
    width: int
    y: int


@dataclass(frozen=True)
class Chart:
    bars: list[Bar]
    width: int
    height: int


ROW_HEIGHT = 26


def bar_chart(items: list[tuple[str, float, str]]) -> Chart:
    """Horizontal bars scaled to the largest value (server-side SVG: no script needed)."""
    top = max((value for _, value, _ in items), default=0.0)
    bars = [
        Bar(
            label=label,
            value=value,
            text=text,
            width=max(1, round(BAR_WIDTH * value / top)) if top > 0 and value > 0 else 0,
            y=i * ROW_HEIGHT,
        )
        for i, (label, value, text) in enumerate(items)
    ]
    return Chart(bars=bars, width=BAR_WIDTH + 160, height=max(1, len(bars)) * ROW_HEIGHT)


def _relative(instant: datetime | None, now: datetime) -> str:
    if instant is None:
        return "—"
    delta = (instant - now).total_seconds()
    if abs(delta) < 1:
        return "now"
    return f"in {human_seconds(delta)}" if delta > 0 else f"{human_seconds(delta)} ago"


def _interval(value: timedelta | None) -> str:
    if value is None:
        return "—"
    seconds = value.total_seconds()
    return f"{seconds:.3f} s" if seconds < 10 else human_seconds(seconds)


def _iso(instant: datetime | None) -> str:
    return "" if instant is None else instant.strftime("%Y-%m-%d %H:%M:%S UTC")


def _ratio_chart(table: Table | None) -> Chart | None:
    """Bars of a compression-ratio column, if the compression stats view has one."""
    if table is None or "tier" not in table.columns:
        return None
    ratio = next((c for c in table.columns if "ratio" in c), None)
    if ratio is None:
        return None
    t, r = table.columns.index("tier"), table.columns.index(ratio)
    items = [
        (str(row[t]), float(row[r]), f"{float(row[r]):.1f}×")
        for row in table.rows
        if row[r] is not None
    ]
    return bar_chart(items)


def _context(snapshot: Snapshot, health: dict[str, Any]) -> dict[str, Any]:
    now = snapshot.now
    jobs = None
    if snapshot.jobs is not None:
        jobs = [
            {
                "name": j.name,
                "schedule": _interval(j.schedule),
                "status": j.status,
                "last_start": _iso(j.last_start),
                "last_start_ago": _relative(j.last_start, now),
                "last_duration": _interval(j.last_duration),
                "next_run": _iso(j.next_run),
                "next_run_in": _relative(j.next_run, now),
                "runs": j.runs,
                "failures": j.failures,
                "last_error": j.last_error or "",
                "last_error_at": _iso(j.last_error_at),
                "bad": j.status in ("failed", "crashed"),
            }
            for j in snapshot.jobs
        ]
    tiers = [
        {
            "tier": t.tier,
            "relation": t.relation,
            "watermark": _iso(t.watermark) if t.watermark is not None else "",
            "lag": (
                "—"
                if t.tier == "raw"
                else ("never refreshed" if t.lag_seconds is None else human_seconds(t.lag_seconds))
            ),
            "late": t.tier in MAX_LAG_SECONDS
            and (t.lag_seconds is None or t.lag_seconds > MAX_LAG_SECONDS[t.tier]),
            "limit": human_seconds(MAX_LAG_SECONDS[t.tier]) if t.tier in MAX_LAG_SECONDS else "",
            "bytes": human_bytes(t.bytes),
            "rows": t.rows,
            "bytes_per_row": f"{t.bytes / t.rows:.1f}" if t.rows else "—",
            "partitions": t.partitions,
            "compressed_partitions": t.compressed_partitions,
        }
        for t in snapshot.tiers
    ]
    compression = snapshot.compression
    storage = [
        {
            "tier": t.tier,
            "rows": f"{t.rows:,}",
            "bytes": human_bytes(t.bytes),
            "bytes_per_row": "—" if t.bytes_per_row is None else f"{t.bytes_per_row:.1f}",
            "compressed_share": "—" if t.compressed_share is None else f"{t.compressed_share:.0%}",
            "rows_per_day": "—" if t.rows_per_day is None else f"{t.rows_per_day:,.0f}",
            "projected": human_size(t.projected_bytes),
        }
        for t in snapshot.storage or []
    ]
    return {
        "now": _iso(now),
        "health": health,
        "jobs": jobs,
        "tiers": tiers,
        "size_chart": bar_chart(
            [(t.tier, float(t.bytes), human_bytes(t.bytes)) for t in snapshot.tiers]
        ),
        "compression": compression,
        "ratio_chart": _ratio_chart(compression),
        "storage": storage if snapshot.storage is not None else None,
    }
