"""The operator status page and the explorer's HTML, through Django's test client."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from pytest_django.fixtures import Settings

from traksense.conftest import TenantFixture
from traksense.core import humanize
from traksense.observability import status

TOKEN = "op-" + "s3cret" * 6


@pytest.fixture
def operator(settings: Settings) -> str:
    settings.OPERATOR_TOKEN = TOKEN
    return TOKEN


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def jobs_installed() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass('ts_job') IS NOT NULL")
        row = cursor.fetchone()
    return bool(row and row[0])


@pytest.mark.django_db
def test_the_status_page_is_disabled_while_no_operator_token_is_set(
    settings: Settings,
) -> None:
    settings.OPERATOR_TOKEN = ""
    client = Client()
    for headers in ({}, bearer(""), bearer("anything")):
        response = client.get("/status", headers=headers)
        assert response.status_code == 404
        assert b"disabled" in response.content
    assert client.post("/status/login", {"token": ""}).status_code == 404


@pytest.mark.django_db
def test_it_asks_for_the_operator_token_without_one(operator: str) -> None:
    response = Client().get("/status")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert b'action="/status/login"' in response.content
    assert b"refresh_1m" not in response.content


@pytest.mark.django_db
def test_it_refuses_a_wrong_token(operator: str) -> None:
    for wrong in (TOKEN + "x", TOKEN[:-1], "Bearer", TOKEN.upper()):
        response = Client().get("/status", headers=bearer(wrong))
        assert response.status_code == 403, wrong
        assert b"refresh_1m" not in response.content


def test_it_refuses_a_tenant_api_key(operator: str, tenant_a: TenantFixture) -> None:
    assert Client().get("/status", headers=bearer(tenant_a.key)).status_code == 403


@pytest.mark.django_db
def test_it_shows_jobs_tiers_and_sizes_to_the_operator(operator: str) -> None:
    installed = jobs_installed()
    response = Client().get("/status", headers=bearer(operator))
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    assert "script-src" not in response["Content-Security-Policy"]  # no script at all
    html = response.content.decode()
    if installed:
        for job in ("refresh_1m", "refresh_5m", "refresh_1h", "retention_raw", "compress_1h"):
            assert f"<code>{job}</code>" in html
    else:
        assert "Scheduler not installed" in html
    for relation in ("ts_measure", "ts_measure_1m", "ts_measure_5m", "ts_measure_1h"):
        assert f"<code>{relation}</code>" in html
    assert 'id="size-chart"' in html
    assert "never refreshed" in html  # a fresh database: no tier has a watermark yet
    storage = html[html.index('<section id="storage">') : html.index('<section id="compression">')]
    for tier in ("raw", "1m", "5m", "1h"):
        assert f"<td><strong>{tier}</strong></td>" in storage
    assert '<th class="num">projected</th>' in storage


@pytest.mark.django_db
def test_it_shows_a_failed_job_with_its_error(operator: str) -> None:
    if not jobs_installed():
        pytest.fail("the jobs migration (ts_job) is missing from the test database")
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE ts_job SET last_status = 'failed', failures = failures + 3, runs = runs + 3,"
            " last_error = 'relation <ts_measure_1m_p20250101> is locked',"
            " last_error_at = now(), last_start = now() - interval '2 minutes'"
            " WHERE name = 'compress_5m'"
        )
    html = Client().get("/status", headers=bearer(operator)).content.decode()
    start = html.index("<code>compress_5m</code>")
    row = html[start : html.index("</tr>", start)]
    assert "failed" in row
    assert "2 min ago" in row
    # Errors are text, escaped like everything else.
    assert "relation &lt;ts_measure_1m_p20250101&gt; is locked" in row


@pytest.mark.django_db
def test_it_says_the_scheduler_is_not_installed_when_the_jobs_table_is_missing(
    operator: str,
) -> None:
    with connection.cursor() as cursor:  # rolled back with the test's transaction
        cursor.execute("DROP VIEW IF EXISTS ts_jobs")
        cursor.execute("DROP TABLE IF EXISTS ts_job CASCADE")
    response = Client().get("/status", headers=bearer(operator))
    assert response.status_code == 200
    assert "Scheduler not installed" in response.content.decode()


@pytest.mark.django_db
def test_it_shows_the_lag_of_each_tier(operator: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute("UPDATE ts_tier SET watermark = now() - interval '95 seconds'")
    html = Client().get("/status", headers=bearer(operator)).content.decode()
    tiers = html[html.index('id="tiers"') :]
    assert "2 min" in tiers  # 95 s behind, below every limit
    assert "never refreshed" not in tiers


@pytest.mark.django_db
def test_the_login_form_sets_a_cookie_that_opens_the_page_until_sign_out(operator: str) -> None:
    client = Client()
    assert client.post("/status/login", {"token": "nope"}).status_code == 403
    assert status.COOKIE not in client.cookies

    response = client.post("/status/login", {"token": operator})
    assert response.status_code == 303
    cookie = client.cookies[status.COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/status"
    assert operator not in cookie.value  # signed fingerprint, not the token
    assert client.get("/status").status_code == 200

    assert client.post("/status/logout").status_code == 303
    assert client.get("/status").status_code == 401


@pytest.mark.django_db
def test_a_cookie_stops_working_when_the_token_changes(operator: str, settings: Settings) -> None:
    client = Client()
    client.post("/status/login", {"token": operator})
    settings.OPERATOR_TOKEN = "a-rotated-token-" + "x" * 20
    assert client.get("/status").status_code == 401


@pytest.mark.django_db
def test_a_forged_cookie_is_ignored(operator: str) -> None:
    client = Client()
    client.cookies[status.COOKIE] = "operator:forged:signature"
    assert client.get("/status").status_code == 401


@pytest.mark.django_db
def test_login_and_logout_accept_only_post(operator: str) -> None:
    assert Client().get("/status/login").status_code == 405
    assert Client().get("/status/logout").status_code == 405
    assert Client().post("/status", headers=bearer(operator)).status_code == 405


def test_the_explorer_page_needs_no_credential_and_loads_only_packaged_assets() -> None:
    response = Client().get("/explorer")
    assert response.status_code == 200
    html = response.content.decode()
    assert '<script src="/static/traksense/explorer.js"></script>' in html
    assert 'href="/static/traksense/traksense.css"' in html
    assert 'id="chart"' in html and 'id="degraded"' in html
    assert "http://" not in html and "https://" not in html  # no CDN
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert response["Referrer-Policy"] == "no-referrer"


def test_the_packaged_assets_are_served_with_their_types() -> None:
    client = Client()
    js = client.get("/static/traksense/explorer.js")
    assert js.status_code == 200 and js["Content-Type"].startswith("text/javascript")
    assert b"/data/points?" in js.content and b"sessionStorage" in js.content
    css = client.get("/static/traksense/traksense.css")
    assert css.status_code == 200 and css["Content-Type"].startswith("text/css")


@pytest.mark.parametrize(
    "name", ["nope.js", "..%2Fstatus.py", "..%2F..%2Fsettings.py", "explorer.js%00.css"]
)
def test_only_the_listed_assets_are_served(name: str) -> None:
    assert Client().get(f"/static/traksense/{name}").status_code == 404


def test_the_status_bars_scale_to_the_largest_value() -> None:
    chart = status.bar_chart([("raw", 100.0, "a"), ("1m", 25.0, "b"), ("5m", 0.0, "c")])
    assert [b.width for b in chart.bars] == [status.BAR_WIDTH, status.BAR_WIDTH // 4, 0]
    assert chart.height == 3 * status.ROW_HEIGHT
    assert status.bar_chart([]).bars == []


def test_sizes_and_durations_read_like_a_human_wrote_them() -> None:
    assert humanize.human_bytes(512) == "512 B"
    assert humanize.human_bytes(3 * 1024 * 1024) == "3.0 MB"
    assert humanize.human_seconds(42) == "42 s"
    assert humanize.human_seconds(600) == "10 min"
    assert humanize.human_seconds(7200) == "2.0 h"
    assert humanize.human_seconds(None) == "—"
    assert humanize.human_size(None) == "—"
    assert humanize.human_size(float("inf")) == "unbounded"
    assert humanize.human_size(2048) == "2.0 kB"
