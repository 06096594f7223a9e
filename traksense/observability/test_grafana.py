"""ops/grafana/traksense-dashboard.json queries only metrics the service really exports.

Every PromQL expression of the dashboard (panel targets and template variables) is reduced to the
metric names it reads, and each must be a family in a real scrape of /metrics taken after one
ingest and one read, so that per-process counters and histograms exist.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from traksense.conftest import TenantFixture

DASHBOARD = Path(__file__).resolve().parents[2] / "ops" / "grafana" / "traksense-dashboard.json"

# PromQL keywords that look like identifiers but are not metric names.
_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool"}
    | {"and", "or", "unless", "offset", "inf", "nan"}
)
# Suffixes a family exports its samples under, by family type.
_SUFFIXES = {
    "_total": ("counter",),
    "_created": ("counter", "histogram", "summary"),
    "_bucket": ("histogram",),
    "_sum": ("histogram", "summary"),
    "_count": ("histogram", "summary"),
}


def metric_names(expr: str) -> set[str]:
    """Names of the metrics a PromQL expression selects (functions, aggregations, labels,
    strings, durations and keywords removed)."""
    text = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range and subquery durations
    # Grouping label lists go entirely, so that `max by (x) (...)` reads as a call of max.
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\$\{?\w+\}?", " ", text)  # Grafana variables outside ranges
    names = set()
    for match in re.finditer(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = match.group(0)
        if word.lower() in _KEYWORDS or text[match.end() :].lstrip().startswith("("):
            continue  # a keyword, or a function / aggregation being called
        names.add(word)
    return names


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def expressions(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) for every query of the dashboard."""
    found = []
    for panel in _panels(board["panels"]):
        for target in panel.get("targets", []):
            found.append((f"panel {panel['title']!r}", target["expr"]))
    for variable in board.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable["query"]
        text = query["query"] if isinstance(query, dict) else query
        # label_values(metric, label): only the first argument is a selector.
        selector = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", text)
        found.append((f"variable {variable['name']!r}", selector.group(1) if selector else text))
    return found


@pytest.fixture
def exported(tenant_a: TenantFixture) -> dict[str, str]:
    """Metric families of a real scrape, after one ingest and one read: name -> type."""
    sample = {
        "device_id": "6f1c1a52-3d4e-4c39-9a51-7f0b8f1e2d10",
        "point_id": "0b6d8a7e-9b55-4f7c-8d3a-2c4e5f6a7b81",
        "ts": "2025-01-01T00:00:00Z",
        "value": 1.5,
    }
    response = tenant_a.client.post(
        "/data/points", {"samples": [sample]}, content_type="application/json"
    )
    assert response.status_code == 200, response.content
    assert tenant_a.client.get("/data/series").status_code == 200
    scrape = Client().get("/metrics")
    assert scrape.status_code == 200
    return {f.name: f.type for f in text_string_to_metric_families(scrape.content.decode())}


def exported_as(name: str, families: dict[str, str]) -> bool:
    if name in families:
        return True
    for suffix, types in _SUFFIXES.items():
        if name.endswith(suffix) and families.get(name.removesuffix(suffix)) in types:
            return True
    return False


def test_every_query_of_the_dashboard_reads_metrics_the_service_exports(
    exported: dict[str, str],
) -> None:
    board = dashboard()
    queries = expressions(board)
    assert len(queries) >= 10
    missing = []
    for where, expr in queries:
        names = metric_names(expr)
        assert names, f"{where}: no metric in {expr!r}"
        missing += [f"{where}: {n}" for n in sorted(names) if not exported_as(n, exported)]
    assert not missing, f"not exported by /metrics: {missing}; exported: {sorted(exported)}"
    # The check itself tells a typo, and a suffix that the family's type does not export.
    assert not exported_as("traksense_ingest_sample_total", exported)
    assert not exported_as("traksense_tier_bytes_total", exported)
    assert not exported_as("traksense_ingest_samples_bucket", exported)


def test_the_dashboard_covers_what_operators_watch() -> None:
    used = set().union(*(metric_names(expr) for _, expr in expressions(dashboard())))
    for name in (
        "traksense_ingest_samples_total",  # ingest rate
        "traksense_http_request_duration_seconds_bucket",  # latency p95
        "traksense_rollup_lag_seconds",  # lag per tier
        "traksense_job_failures_total",  # job failures
        "traksense_tier_bytes",  # sizes and the compression proxy
    ):
        assert name in used, name


def test_every_panel_is_well_formed() -> None:
    board = dashboard()
    assert board["uid"] and board["title"]
    panels = list(_panels(board["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]), panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("rate(a_total[5m])", {"a_total"}),
        (
            "histogram_quantile(0.95, sum by (le, endpoint)"
            ' (rate(h_bucket{x="y(z)"}[$__rate_interval])))',
            {"h_bucket"},
        ),
        ('max by (tier) (b) / clamp_min(max by (tier) (c{tier=~"1m|5m"}), 1)', {"b", "c"}),
        ("sum(x) without (job) > 0 and on (instance) y offset 5m", {"x", "y"}),
        ("max by (job_name) (traksense_job_failing) > bool 0", {"traksense_job_failing"}),
    ],
)
def test_metric_names_are_extracted_from_promql(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names
