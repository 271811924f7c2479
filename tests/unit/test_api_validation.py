"""The control API refuses bad input with a 400 naming the parameter, the value and what is allowed, in the
one error shape `{"message", "field"}`, and publishes every answer it gives in its OpenAPI schema. These run
the Litestar app in process: every request here is refused before a handler touches the daemon's parts.
(tests/e2e/test_api_fuzz.py fuzzes a real daemon.)"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from appliance.daemon.api import _cursor, _cursor_text, create_app

API = "/api/v1"


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient[Any]]:
    app = create_app(None, None, None, "http://localhost:8080", [], [])  # type: ignore[arg-type]
    with TestClient(app) as c:
        yield c


def refused(response: Any, field: str | None, *words: str) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    body = response.json()
    assert set(body) >= {"message", "field"} and body["field"] == field, body
    for word in words:
        assert word in body["message"], (word, body["message"])
    return body


@pytest.mark.parametrize(("query", "words"), [
    ("limit=-1", ["limit='-1'", ">= 1"]),  # was a 500: DuckDB's BinderException on LIMIT -1
    ("limit=0", ["limit='0'", ">= 1"]),
    ("limit=99999999999999999999", ["<= 10000"]),
    ("limit=ten", ["limit='ten'", "expected `int`"]),
])
def test_events_limit(client: TestClient[Any], query: str, words: list[str]) -> None:
    refused(client.get(f"{API}/events?{query}"), "limit", "query parameter", *words)


@pytest.mark.parametrize("path", ["/endpoints/my-ep/logs", "/endpoints/my-ep/deployments/blue/logs"])
@pytest.mark.parametrize("since", ["nan", "inf", "-inf", "1e400", "-5", "0", "315360001"])
def test_log_windows(client: TestClient[Any], path: str, since: str) -> None:
    # Were 500s: OverflowError (timedelta) for inf and huge values, ValueError for nan, 0 and negatives.
    refused(client.get(f"{API}{path}?since={since}"), "since", f"since='{since}'")


@pytest.mark.parametrize("path", ["metrics", "mirror-report"])
@pytest.mark.parametrize("since", ["0", "-1", "nan", "4.0e16"])
def test_metric_windows(client: TestClient[Any], path: str, since: str) -> None:
    refused(client.get(f"{API}/endpoints/my-ep/{path}?since={since}"), "since", "query parameter since")


@pytest.mark.parametrize(("query", "field"), [
    ("after_id=-1", "after_id"), ("limit=0", "limit"), ("limit=10001", "limit")])
def test_request_log_paging(client: TestClient[Any], query: str, field: str) -> None:
    refused(client.get(f"{API}/endpoints/my-ep/logs?{query}"), field)


@pytest.mark.parametrize("cursor", ["notjson", '{"blue-0.log": 5}', "blue-0.log:-1", "a:1,", "a b:1", "a:1\n"])
def test_log_cursor(client: TestClient[Any], cursor: str) -> None:
    # `notjson` was a 500 (msgspec's DecodeError); a cursor is now `<file>:<bytes>,...`, all of them usable.
    refused(client.get(f"{API}/endpoints/my-ep/deployments/blue/logs", params={"cursor": cursor}), "cursor")


def test_cursor_round_trip() -> None:
    cursor = {"blue-0.log": 234, "blue-1.log": 0, "build.log": 10**12}
    assert _cursor(_cursor_text(cursor)) == cursor
    assert _cursor(_cursor_text({})) == {}


def test_tail_and_ttl(client: TestClient[Any]) -> None:
    refused(client.get(f"{API}/endpoints/my-ep/deployments/blue/logs?tail=-1"), "tail", ">= 0")
    refused(client.post(f"{API}/endpoints/my-ep/token?ttl=5"), "ttl", "ttl='5'", ">= 60")


@pytest.mark.parametrize(("path", "field"), [
    ("/endpoints/a%00b", "name"), ("/endpoints/my-ep/deployments/bl%00ue/logs", "name"),
    ("/endpoints/x/deployments", "endpoint"), ("/models/a%00b", "name"), ("/environments/-x", "name"),
    ("/endpoints/my-ep-", "name")])
def test_names_in_paths(client: TestClient[Any], path: str, field: str) -> None:
    # The name rules of appliance.specs.names, said in words (not as a regular expression).
    refused(client.get(f"{API}{path}"), field, "path parameter", "use ")


def test_nul_in_a_document(client: TestClient[Any]) -> None:
    # Were 500s: the loader's paths raised ValueError (embedded null byte).
    refused(client.post(f"{API}/models", json={"body": {"name": "m", "path": "a\x00b"}}), "path", "NUL")
    refused(client.post(f"{API}/models", json={"body": {"name": "m", "path": "x"}, "base": "/tmp\x00"}), "base",
            "NUL")


def test_deep_documents(client: TestClient[Any]) -> None:
    def apply(depth: int) -> Any:
        body = '{"documents": [{"body": {"a": ' + "[" * depth + "]" * depth + "}}]}"
        return client.post(f"{API}/apply", content=body, headers={"content-type": "application/json"})

    refused(apply(150), "a[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0...", "nested more than 100")
    refused(apply(5000), None, "nested too deeply")  # deeper than the JSON decoder goes: was a 500


def test_bodies_are_read_strictly(client: TestClient[Any]) -> None:
    refused(client.post(f"{API}/apply", json={"documents": [], "all_traffic": 0}), "all_traffic", "expected `bool`")
    refused(client.post(f"{API}/apply", json={"documents": [], "wait": "5"}), "wait", "expected `float`")
    refused(client.post(f"{API}/apply", json={"documents": [], "wait": -1}), "wait", ">= 0")
    refused(client.post(f"{API}/apply", json={"documents": [{"body": {}, "sourse": "x"}]}), "documents.0.sourse",
            "check its spelling")
    refused(client.put(f"{API}/request-log", json={"enabled": True, "retention": 5}), "retention")
    refused(client.post(f"{API}/endpoints/my-ep/traffic", json={"traffic": {"blue": 101}}), "traffic", "<= 100")
    refused(client.post(f"{API}/endpoints/my-ep/regenerate-keys", json={"key_type": "tertiary"}), "key_type",
            "'primary' or 'secondary'")
    refused(client.post(f"{API}/endpoints/my-ep/regenerate-keys", json={"key_type": "primary", "value": "short"}),
            "value", "length >= 16")
    refused(client.post(f"{API}/apply"), None, "a JSON body is required")


def test_allow_headers(client: TestClient[Any]) -> None:
    # Litestar's own OPTIONS listed only the first handler's methods of a path two handlers share.
    for path, allow in (("/endpoints/my-ep", "DELETE, GET, OPTIONS"), ("/models", "GET, OPTIONS, POST"),
                        ("/request-log", "GET, OPTIONS, PUT"),
                        ("/endpoints/my-ep/deployments/blue", "DELETE, GET, OPTIONS")):
        assert client.options(f"{API}{path}").headers["allow"] == allow
        response = client.request("TRACE", f"{API}{path}")
        assert response.status_code == 405 and set(response.headers["allow"].split(", ")) == set(allow.split(", "))
        assert set(response.json()) >= {"message", "field"}


def test_schema_declares_every_answer(client: TestClient[Any]) -> None:
    schema = client.get(f"{API}/schema/openapi.json").json()
    error = {"$ref": "#/components/schemas/ErrorBody"}
    assert set(schema["components"]["schemas"]["ErrorBody"]["required"]) == {"message", "field"}
    operations = [(path, method, op) for path, ops in schema["paths"].items() for method, op in ops.items()]
    assert len(operations) >= 28
    for path, method, op in operations:
        answers = op["responses"]
        wanted = {"403", "415", "431", "500", "503"} | ({"401"} if path != f"{API}/health" else set())
        assert wanted <= set(answers), (method, path, sorted(answers))
        for status, answer in answers.items():
            if status >= "400":
                assert answer["content"]["application/json"]["schema"] == error, (method, path, status)
        if op.get("parameters") or op.get("requestBody"):
            assert "400" in answers, (method, path)
    for path in ("/apply/stream", "/environments/{name}/build", "/endpoints/{endpoint}/deployments/{name}/package"):
        ok = schema["paths"][API + path]["post"]["responses"]["200"]["content"]
        assert list(ok) == ["application/x-ndjson"], path
    # Bodies that refuse unknown fields say so.
    assert schema["components"]["schemas"]["ApplyIn"]["additionalProperties"] is False
