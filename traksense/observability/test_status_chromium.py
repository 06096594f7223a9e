"""The point explorer in a real browser: headless Chromium (Debian's `chromium` package) against a
live server holding a tenant with data. The page draws without clicks from its URL fragment; the
test reads the DOM Chromium dumps and counts the chart's pixels in the screenshot it takes.

Chromium missing is a failure, never a skip: install it with `apt-get install -y chromium`.
"""

from __future__ import annotations

import math
import re
import struct
import subprocess
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.test import override_settings
from pytest_django.live_server_helper import LiveServer

from traksense.conftest import TenantFixture

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
)
WINDOW = (1200, 900)
LINE_RGB = (0x1F, 0x6F, 0xEB)  # --line in traksense.css

DEVICE = uuid.UUID("6f1c1a52-3d4e-4c39-9a51-7f0b8f1e2d10")
POINT = uuid.UUID("0b6d8a7e-9b55-4f7c-8d3a-2c4e5f6a7b81")


def chromium(url: str, workdir: Path, screenshot: Path | None = None) -> str:
    """Load `url`, let its scripts and fetches run, return the DOM (and write a PNG)."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the explorer test needs Debian's chromium package "
            "(apt-get install -y chromium)"
        )
    args = [
        str(CHROMIUM),
        *FLAGS,
        f"--user-data-dir={workdir / 'profile'}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        # Virtual time waits for pending fetches, so the budget is not wall-clock time.
        "--virtual-time-budget=10000",
        "--dump-dom",
    ]
    if screenshot is not None:
        args.append(f"--screenshot={screenshot}")
    args.append(url)
    result = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"chromium failed ({result.returncode}): {result.stderr[-3000:]}"
    return result.stdout


# -- a PNG reader (8-bit RGB/RGBA, not interlaced: what Chromium writes) -------------------------


@dataclass(frozen=True)
class Image:
    width: int
    height: int
    channels: int
    pixels: bytes  # rows of width * channels bytes

    def rgb(self, x: int, y: int) -> tuple[int, int, int]:
        i = (y * self.width + x) * self.channels
        return self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def read_png(data: bytes) -> Image:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, []
    width = height = depth = color = interlace = 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    assert depth == 8 and color in (2, 6) and interlace == 0, (depth, color, interlace)
    channels = 3 if color == 2 else 4
    stride = width * channels
    raw = zlib.decompress(b"".join(idat))
    out = bytearray(height * stride)
    prev = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        if kind == 1:
            for i in range(channels, stride):
                line[i] = (line[i] + line[i - channels]) & 0xFF
        elif kind == 2:
            line = bytearray((a + b) & 0xFF for a, b in zip(line, prev, strict=True))
        elif kind == 3:
            for i in range(stride):
                left = line[i - channels] if i >= channels else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif kind == 4:
            for i in range(stride):
                left = line[i - channels] if i >= channels else 0
                upleft = prev[i - channels] if i >= channels else 0
                line[i] = (line[i] + _paeth(left, prev[i], upleft)) & 0xFF
        out[y * stride : (y + 1) * stride] = line
        prev = line
    return Image(width, height, channels, bytes(out))


def count_pixels(
    image: Image, box: tuple[int, int, int, int], match: Callable[[int, int, int], bool]
) -> int:
    x0, y0, w, h = box
    return sum(
        1
        for y in range(max(0, y0), min(image.height, y0 + h))
        for x in range(max(0, x0), min(image.width, x0 + w))
        if match(*image.rgb(x, y))
    )


def is_line(r: int, g: int, b: int) -> bool:
    return abs(r - LINE_RGB[0]) < 40 and abs(g - LINE_RGB[1]) < 40 and abs(b - LINE_RGB[2]) < 40


def is_band(r: int, g: int, b: int) -> bool:
    # --band is the line colour at 18 % over white: a pale blue, bluer than it is red.
    return b > 235 and 180 < r < 235 and b - r > 15


# -- the page's state, as Chromium dumped it ----------------------------------------------------


def chart_attrs(dom: str) -> dict[str, str]:
    match = re.search(r'<div id="chart"([^>]*)>', dom)
    assert match, dom[:2000]
    return dict(re.findall(r'data-([a-z-]+)="([^"]*)"', match.group(1)))


def element(dom: str, element_id: str) -> str:
    match = re.search(rf'<p id="{element_id}"[^>]*>.*?</p>', dom, re.S)
    assert match, f"no #{element_id} in the page"
    return match.group(0)


@pytest.fixture(scope="module")
def live_server() -> Iterator[LiveServer]:
    """pytest-django's live server, built while STATIC_URL is set: it wraps the app in Django's
    static-files handler, which cannot start without one (TrakSense serves its few assets itself
    and sets none). Overrides the plugin's fixture of the same name for this module."""
    with override_settings(STATIC_URL="/live-server-static/"):
        server = LiveServer("localhost")
    yield server
    server.stop()


@pytest.fixture
def tenant_with_data(
    committed_db: None, make_tenant: Callable[[str], TenantFixture]
) -> TenantFixture:
    """Two hours of one temperature point, three samples a minute: each 1-minute bucket has a
    spread, so the min/max band shows."""
    tenant = make_tenant("explorer")
    end = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)
    samples = []
    for minute in range(120):
        for second, wobble in ((0, -0.6), (20, 0.0), (40, 0.6)):
            ts = end - timedelta(minutes=120 - minute) + timedelta(seconds=second)
            value = 21 + 4 * math.sin(minute / 12) + wobble
            samples.append(
                {
                    "device_id": str(DEVICE),
                    "point_id": str(POINT),
                    "ts": ts.isoformat(),
                    "value": value,
                }
            )
    response = tenant.client.post(
        "/data/points", {"samples": samples}, content_type="application/json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["accepted"] == len(samples)
    return tenant


def explorer_url(live_server: LiveServer, key: str, **state: str) -> str:
    fragment = "&".join(f"{k}={v}" for k, v in {"key": key, **state}.items())
    return f"{live_server.url}/explorer#{fragment}"


def test_the_explorer_draws_a_point_with_its_min_max_band(
    live_server: LiveServer, tenant_with_data: TenantFixture, tmp_path: Path
) -> None:
    png = tmp_path / "explorer.png"
    url = explorer_url(
        live_server, tenant_with_data.key, device=str(DEVICE), point=str(POINT), range="series"
    )
    dom = chromium(url, tmp_path, screenshot=png)

    chart = chart_attrs(dom)
    assert chart["state"] == "drawn", element(dom, "message")
    assert chart["agg"] == "1m"  # two hours, auto: the finest tier that fits the chart
    assert 119 <= int(chart["points"]) <= 121
    assert 'class="band"' in dom and 'class="line"' in dom
    assert "hidden" in element(dom, "degraded")
    assert tenant_with_data.key not in dom  # the key left the page for sessionStorage

    image = read_png(png.read_bytes())
    assert (image.width, image.height) == WINDOW
    x, y, w, h = (int(v) for v in chart["box"].split(","))
    assert w > 600 and h > 250, chart["box"]
    line = count_pixels(image, (x, y, w, h), is_line)
    band = count_pixels(image, (x, y, w, h), is_band)
    # A 2-px line across ~900 px of plot, and a band a few px high along it.
    assert line > 1500, f"only {line} line-coloured pixels in the chart area {chart['box']}"
    assert band > 2000, f"only {band} band-coloured pixels in the chart area {chart['box']}"
    # Below the chart nothing has the line's colour: the box measured is the chart's.
    assert count_pixels(image, (x, y + h, w, WINDOW[1] - y - h), is_line) == 0


def test_the_explorer_shows_the_degradation_notice(
    live_server: LiveServer, tenant_with_data: TenantFixture, tmp_path: Path
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    url = explorer_url(
        live_server,
        tenant_with_data.key,
        device=str(DEVICE),
        point=str(POINT),
        range="custom",
        agg="raw",
        start=(now - timedelta(days=30)).isoformat().replace("+00:00", "Z"),
        end=(now + timedelta(minutes=5)).isoformat().replace("+00:00", "Z"),
    )
    dom = chromium(url, tmp_path)
    chart = chart_attrs(dom)
    assert chart["state"] == "drawn", element(dom, "message")
    assert chart["agg"] == "1m"
    notice = element(dom, "degraded")
    assert "hidden" not in notice
    assert "asked for raw, answered from 1m" in notice


def test_the_explorer_says_when_the_key_is_rejected(
    live_server: LiveServer, tenant_with_data: TenantFixture, tmp_path: Path
) -> None:
    dom = chromium(explorer_url(live_server, "tsk_not-a-real-key"), tmp_path)
    assert chart_attrs(dom)["state"] == "error"
    assert "The API key was rejected" in element(dom, "message")


def _post(tenant: TenantFixture, point: uuid.UUID, values: list[tuple[datetime, object]]) -> None:
    samples = [
        {"device_id": str(DEVICE), "point_id": str(point), "ts": ts.isoformat(), "value": v}
        for ts, v in values
    ]
    response = tenant.client.post(
        "/data/points", {"samples": samples}, content_type="application/json"
    )
    assert response.status_code == 200, response.content


def test_the_explorer_draws_state_timelines_counter_bars_and_text_states(
    live_server: LiveServer, tenant_with_data: TenantFixture, tmp_path: Path
) -> None:
    from django.core.management import call_command

    end = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)
    minutes = [end - timedelta(minutes=120 - m) for m in range(120)]
    on_off, meter, mode = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    _post(tenant_with_data, on_off, [(t, (i // 15) % 2 == 0) for i, t in enumerate(minutes)])
    _post(tenant_with_data, meter, [(t, 100.0 + 2.5 * i) for i, t in enumerate(minutes)])
    _post(
        tenant_with_data, mode, [(t, ["heat", "off"][(i // 30) % 2]) for i, t in enumerate(minutes)]
    )
    call_command(
        "point",
        "set",
        "--tenant",
        str(tenant_with_data.id),
        "--device",
        str(DEVICE),
        "--point",
        str(meter),
        "--counter",
    )

    def draw(point: uuid.UUID, agg: str) -> str:
        url = explorer_url(
            live_server,
            tenant_with_data.key,
            device=str(DEVICE),
            point=str(point),
            range="series",
            agg=agg,
        )
        return chromium(url, tmp_path)

    dom = draw(on_off, "1m")
    chart = chart_attrs(dom)
    assert (chart["state"], chart["agg"], chart["mode"]) == ("drawn", "1m", "bars"), element(
        dom, "message"
    )
    assert dom.count('class="bar"') >= 100  # one bar per minute the point was on
    assert "share of each bucket the point was on" in element(dom, "message")

    dom = draw(meter, "5m")
    chart = chart_attrs(dom)
    assert (chart["state"], chart["mode"]) == ("drawn", "bars"), element(dom, "message")
    assert 20 <= dom.count('class="bar"') <= 26
    assert "increase in each bucket" in element(dom, "message")

    dom = draw(mode, "1h")
    assert chart_attrs(dom)["state"] == "table"
    assert "time in (s)" in dom and "heat" in dom


def test_the_explorer_draws_all_points_of_a_device_from_one_request(
    live_server: LiveServer, tenant_with_data: TenantFixture, tmp_path: Path
) -> None:
    end = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)
    minutes = [end - timedelta(minutes=120 - m) for m in range(120)]
    humidity, fan, mode = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    _post(tenant_with_data, humidity, [(t, 40.0 + (i % 7)) for i, t in enumerate(minutes)])
    _post(tenant_with_data, fan, [(t, (i // 20) % 2 == 0) for i, t in enumerate(minutes)])
    _post(
        tenant_with_data, mode, [(t, ["heat", "off"][(i // 30) % 2]) for i, t in enumerate(minutes)]
    )
    url = explorer_url(
        live_server, tenant_with_data.key, device=str(DEVICE), point="*", range="series", agg="1m"
    )
    dom = chromium(url, tmp_path)
    chart = chart_attrs(dom)
    assert (chart["state"], chart["mode"]) == ("drawn", "device"), element(dom, "message")
    # Four points: three charts and the text point's table, each under its point's heading.
    assert chart["charts"] == "4"
    assert dom.count('class="device-point"') == 4
    for point in (POINT, humidity, fan, mode):
        assert str(point) in dom
    assert dom.count('class="line-chart"') == 3
    assert 'class="band"' in dom and 'class="bar"' in dom and "<table" in dom
    # 120 minutes of each of the three charted points, the text point's state rows besides.
    assert int(chart["points"]) >= 3 * 119
    assert "(one request)" in dom
