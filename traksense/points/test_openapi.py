"""The served OpenAPI document, and schemathesis against a live server with it."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import orjson
import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.db import connections
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.core.parameters import ParameterLocation
from schemathesis.core.result import Err, Ok

from traksense.conftest import TenantFixture
from traksense.points.openapi import DOCUMENT
from traksense.points.test_read import ingest


def operation_of(result: Ok[Any] | Err[Any]) -> Any:
    """The operation of a get_all_operations() result; a schema error fails the test."""
    assert isinstance(result, Ok), result.err()
    return result.ok()


PATHS = {
    "/data/points",
    "/data/query",
    "/data/series",
    "/data/devices",
    "/healthz",
    "/metrics",
}


def test_the_openapi_document_is_served_parses_and_lists_every_path(client: Client) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    document = orjson.loads(response.content)
    assert document["openapi"] == "3.1.0"
    assert set(document["paths"]) == PATHS
    assert set(document["paths"]["/data/points"]) == {"get", "post"}
    schema = schemathesis.openapi.from_dict(document)
    operations = [operation_of(result) for result in schema.get_all_operations()]
    assert {op.path for op in operations} == PATHS


def test_every_query_parameter_of_get_points_is_documented() -> None:
    from traksense.points.resolution import KNOWN_PARAMS

    get = DOCUMENT["paths"]["/data/points"]["get"]
    assert {p["name"] for p in get["parameters"]} == set(KNOWN_PARAMS)


def test_django_own_errors_are_json_too(client: Client) -> None:
    # Found by the schemathesis run below: a malformed Host header made Django answer its own
    # HTML 400 page, a Content-Type the document does not list.
    for response in (
        client.get("/data/points", HTTP_HOST="Jz+P("),
        client.post("/data/points", b"{}", content_type="application/json", HTTP_HOST="a b"),
    ):
        assert response.status_code == 400
        assert response["Content-Type"] == "application/json"
        assert orjson.loads(response.content)["error"]["code"] == "bad_request"
    missing = client.get("/no/such/path")
    assert missing.status_code == 404 and missing["Content-Type"] == "application/json"
    assert orjson.loads(missing.content)["error"]["code"] == "not_found"


EXAMPLES = 60


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
        pass


@pytest.fixture
def live_url(committed_db: None) -> Iterator[str]:
    """The app served over real HTTP on loopback, from threads using the test database."""
    django_app = WSGIHandler()

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        # Each request runs in a thread of its own: close its connection when done, or the
        # test database could not be dropped at the end of the session.
        try:
            return list(django_app(environ, start_response))
        finally:
            connections.close_all()

    server = make_server(
        "127.0.0.1", 0, app, server_class=_ThreadingServer, handler_class=_QuietHandler
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def test_no_generated_request_gets_a_5xx_or_an_answer_outside_the_schema(
    live_url: str, tenant_a: TenantFixture
) -> None:
    # A real series, so that generated reads of it reach the tiers, not only the 404.
    device, point = uuid.uuid4(), uuid.uuid4()
    t = (datetime.now(UTC) - timedelta(hours=3)).replace(microsecond=0)
    ingest(tenant_a, device, point, [(t + timedelta(seconds=30 * i), float(i)) for i in range(60)])

    schema = schemathesis.openapi.from_dict(DOCUMENT)
    headers = {"Authorization": f"Bearer {tenant_a.key}"}
    strategies = []
    for result in schema.get_all_operations():
        operation = operation_of(result)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategies.append(operation.as_strategy(generation_mode=mode))
        if operation.path == "/data/points" and operation.method.upper() == "GET":
            strategies.append(
                operation.as_strategy(query={"device_id": str(device), "point_id": str(point)})
            )

    @settings(
        max_examples=EXAMPLES * len(strategies),
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(case=st.one_of(strategies))
    def check(case: Any) -> None:
        # positive_data_acceptance is left out: OpenAPI cannot say "start before end", so a
        # schema-valid request may still rightly be a 400. /healthz answers a documented 503
        # when no scheduler runs (as here): that is its job, so for it alone a 5xx is allowed.
        # Every other check runs: no 5xx, documented status codes, content types, bodies, and
        # rejection of schema-violating requests.
        excluded = [schemathesis.checks.positive_data_acceptance]
        if case.operation.path == "/healthz":
            excluded.append(schemathesis.checks.not_a_server_error)
        # The tenant's key goes with every request, except when the case is about headers
        # that violate the schema (a missing or mangled Authorization must be refused).
        header = case.meta.components.get(ParameterLocation.HEADER) if case.meta else None
        negative_header = header is not None and header.mode == GenerationMode.NEGATIVE
        case.call_and_validate(
            base_url=live_url,
            headers=None if negative_header else headers,
            excluded_checks=excluded,
        )

    check()
