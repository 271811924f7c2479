"""Bad input to the data plane, without a server: the router (`DataPlane` called with a fake ASGI
receive/send and fake instances), the worker's routes (`Worker.handle`) and the V2 body checks
(`OnnxModel.v2_inputs` / `v2_outputs`). Every refusal is a JSON 4xx with a request id; a stranger's
request (no such endpoint, no valid credentials) costs no request-log row; any exception is a JSON 500
naming the request id."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from appliance.router import DataPlane, EndpointRoute, RoutingTable
from appliance.router.dataplane import MAX_ECHO, _target
from appliance.runtime import Response
from appliance.scoring.app import Worker
from appliance.scoring.onnx_model import BadInput, OnnxModel
from appliance.specs import RequestSettings

KEY = b"the-primary-key"
DEEP = b"[" * 1000 + b"]" * 1000
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.2, 3.4, 5.4, 2.3]]


class FakeClient:
    def __init__(self, answer: Response | BaseException) -> None:
        self.answer = answer
        self.calls: list[tuple[str, str, bytes]] = []

    async def request(self, method: str, target: str, body: bytes = b"", headers: Any = (),
                      timeout: float | None = None) -> Response:
        self.calls.append((method, target, body))
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer


class FakeInstance:
    def __init__(self, client: FakeClient) -> None:
        self.name = "blue-0"
        self.outstanding = 0
        self.client = client

    def target(self, path: str) -> str:
        return path


class FakeDeployment:
    state, error = "Succeeded", None

    def __init__(self, answer: Response | BaseException) -> None:
        self.client = FakeClient(answer)
        self.ready = [FakeInstance(self.client)]
        self.plan = SimpleNamespace(request_settings=RequestSettings(), instance_count=1)


class Recorder:
    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []

    def record(self, event: tuple[Any, ...]) -> None:
        self.rows.append(event)


OK = Response(200, [(b"content-type", b"application/json")], b'{"ok":true}')


def plane(answer: Response | BaseException = OK, mirror: Response | BaseException | None = None,
          ) -> tuple[DataPlane, Recorder, dict[str, FakeDeployment]]:
    deployments = {"blue": FakeDeployment(answer)}
    if mirror is not None:
        deployments["green"] = FakeDeployment(mirror)
    fields = {f.name for f in dataclasses.fields(EndpointRoute) if f.init}
    values = {"name": "ep", "auth_mode": "key", "keys": (KEY, b"the-secondary-key"), "token_secret": b"s" * 32,
              "endpoint_id": "abc123", "traffic": {"blue": 100},
              "mirror_traffic": {"green": 50} if mirror is not None else {}, "deployments": deployments}
    table = RoutingTable()
    table.put(EndpointRoute(**{k: v for k, v in values.items() if k in fields}))
    recorder = Recorder()
    dataplane = DataPlane(table, recorder)
    dataplane._random = lambda: 0.0  # a mirror, when there is one, always gets its copy
    return dataplane, recorder, deployments


def call(dataplane: DataPlane, endpoint: str = "ep", rest: str = "score", method: str = "POST",
         body: bytes = b'{"data": [[1, 2, 3, 4]]}', headers: list[tuple[bytes, bytes]] | None = None,
         key: bytes | None = KEY) -> tuple[int, dict[bytes, bytes], bytes]:
    sent: list[dict[str, Any]] = []
    auth = [(b"authorization", b"Bearer " + key)] if key is not None else []
    scope = {"type": "http", "method": method, "path": f"/endpoints/{endpoint}/{rest}", "query_string": b"",
             "headers": [*auth, *(headers or [])]}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(dataplane(scope, receive, send, endpoint, rest))
    start, end = sent
    return start["status"], dict(start["headers"]), end["body"]


def refused(answer: tuple[int, dict[bytes, bytes], bytes], status: int) -> dict[str, Any]:
    code, headers, body = answer
    assert code == status, (code, body)
    assert headers[b"content-type"] == b"application/json" and headers[b"x-request-id"]
    assert int(headers[b"content-length"]) == len(body) < 1000
    return json.loads(body)


# -- the request log and its counters ----------------------------------------------------------------

def test_an_unknown_endpoint_costs_no_row() -> None:
    dataplane, recorder, _ = plane()
    for name in ["x" * 60_000, "nope", "ep\x00", "", "é"]:
        message = refused(call(dataplane, endpoint=name), 404)["message"]
        assert repr(name[:MAX_ECHO]) in message or name[:MAX_ECHO] in message
    assert recorder.rows == [] and dataplane.refused_unknown_endpoint == 5
    assert dataplane.refused_unauthenticated == 0


@pytest.mark.parametrize("key", [None, b"", b"wrong", b"\xff\xfe", b"k" * 10_000])
def test_failed_authentication_costs_no_row(key: bytes | None) -> None:
    dataplane, recorder, deployments = plane()
    refused(call(dataplane, key=key), 401)
    refused(call(dataplane, key=key, rest="x" * 10_000, headers=[(b"x-request-id", b"r" * 500)]), 401)
    assert recorder.rows == [] and dataplane.refused_unauthenticated == 2
    assert deployments["blue"].client.calls == []


def test_a_caller_with_credentials_is_logged_and_unknown_pins_are_not_stored() -> None:
    dataplane, recorder, _ = plane()
    assert call(dataplane)[0] == 200
    message = refused(call(dataplane, headers=[(b"azureml-model-deployment", b"t" * 5000)]), 404)["message"]
    assert "'" + "t" * MAX_ECHO + "..." in message and "blue" in message
    refused(call(dataplane, headers=[(b"x-request-id", b"r" * 101)]), 431)
    assert [(r[3], r[6]) for r in recorder.rows] == [("blue", 200), ("", 404), ("", 431)]
    assert all(len(r[1]) <= 100 for r in recorder.rows)
    assert dataplane.refused_unknown_endpoint == dataplane.refused_unauthenticated == 0


# -- routes and methods -------------------------------------------------------------------------------

@pytest.mark.parametrize(("method", "rest", "allow"), [
    ("PUT", "score", b"GET, POST, OPTIONS"), ("DELETE", "score", b"GET, POST, OPTIONS"),
    ("PATCH", "score", b"GET, POST, OPTIONS"), ("HEAD", "score", b"GET, POST, OPTIONS"),
    ("POST", "swagger.json", b"GET"), ("OPTIONS", "swagger.json", b"GET"), ("POST", "", b"GET"),
    ("POST", "v2", b"GET"), ("POST", "v2/", b"GET"), ("PUT", "v2/health/live", b"GET"),
    ("POST", "v2/health/ready/", b"GET"), ("DELETE", "v2/models/iris", b"GET"),
    ("POST", "v2/models/iris/ready", b"GET"), ("GET", "v2/models/iris/infer", b"POST"),
    ("PUT", "v2/models/iris/versions/1/infer", b"POST"), ("GET", "v2/models/iris/infer/", b"POST"),
])
def test_wrong_methods_are_405_and_reach_no_instance(method: str, rest: str, allow: bytes) -> None:
    dataplane, recorder, deployments = plane()
    answer = call(dataplane, rest=rest, method=method)
    body = refused(answer, 405)
    assert answer[1][b"allow"] == allow and method in (body.get("message") or body["error"])
    assert deployments["blue"].client.calls == [] and len(recorder.rows) == 1


@pytest.mark.parametrize("rest", ["nowhere", "score/", "score\x00", "SCORE", "score\r\nHost: x", "a" * 10_000,
                                  "swagger.json/x", "../score", "v2x", "sc%00ore"])
def test_unknown_paths_are_404_and_reach_no_instance(rest: str) -> None:
    dataplane, _, deployments = plane()
    refused(call(dataplane, rest=rest), 404)
    assert deployments["blue"].client.calls == []


@pytest.mark.parametrize(("rest", "method", "target"), [
    ("score", "POST", "/score"), ("score", "GET", "/score"), ("score", "OPTIONS", "/score"),
    ("swagger.json", "GET", "/swagger.json"), ("", "GET", "/"), ("v2", "GET", "/v2"),
    ("v2/models/iris/versions/1/infer", "POST", "/v2/models/iris/versions/1/infer"),
    ("v2/models/iris/versions/1", "GET", "/v2/models/iris/versions/1"),
    ("v2/models/infer", "GET", "/v2/models/infer"),  # a model called "infer": its metadata
    ("v2/models/ir\r\nX-Evil: 1/infer", "POST", "/v2/models/ir%0D%0AX-Evil%3A%201/infer"),
    ("v2/models/ir\x00is/infer", "POST", "/v2/models/ir%00is/infer"),
    ("v2/models/☃/ready", "GET", "/v2/models/%E2%98%83/ready"),
    ("v2/models/iris?x=1/infer", "POST", "/v2/models/iris%3Fx%3D1/infer"),
    ("v2/repository/index", "POST", "/v2/repository/index"),  # beyond the routes known here: as it is
    ("v2/models/m 1/stats", "GET", "/v2/models/m%201/stats"),
])
def test_targets_are_safe_in_a_request_line(rest: str, method: str, target: str) -> None:
    assert _target(rest, method) == target
    dataplane, _, deployments = plane()
    call(dataplane, rest=rest, method=method)
    assert deployments["blue"].client.calls[0][1] == target


# -- faults ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("fault", [RuntimeError("boom"), RecursionError("deep"), KeyError("k"),
                                   UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad"), ValueError("v")])
def test_any_exception_is_a_json_500_with_the_request_id(fault: Exception,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    dataplane, recorder, _ = plane(fault)
    with caplog.at_level(logging.ERROR, logger="appliance.router"):
        answer = call(dataplane, headers=[(b"x-request-id", b"req-\xff-1")])
    body = refused(answer, 500)
    assert answer[1][b"x-request-id"] == b"req-\xff-1" and "req-\ufffd-1" in body["message"]
    assert "req-\ufffd-1" in caplog.text and type(fault).__name__ in caplog.text
    assert [r[6] for r in recorder.rows] == [500]
    v2 = refused(call(dataplane, rest="v2/models/iris/infer"), 500)
    assert "request id" in v2["error"]


def test_an_instance_that_is_gone_is_a_502_even_with_an_odd_request_id() -> None:
    dataplane, _, _ = plane(ConnectionResetError("gone"))
    answer = call(dataplane, headers=[(b"x-request-id", b"\xff\xfe")])
    assert "\ufffd" in refused(answer, 502)["message"]


def test_a_failing_mirror_never_touches_the_live_answer(caplog: pytest.LogCaptureFixture) -> None:
    dataplane, recorder, deployments = plane(OK, mirror=RuntimeError("mirror boom"))
    with caplog.at_level(logging.ERROR, logger="appliance.router"):
        assert call(dataplane)[0] == 200
    assert deployments["green"].client.calls and "mirror" in caplog.text
    [row] = recorder.rows
    assert row[6] == 200 and row[-4] == 500  # the live status, and the copy's


@pytest.mark.parametrize("length", [b"1" * 5000, b"99999999999999999999", b"2000000"])
def test_absurd_content_lengths_are_413(length: bytes) -> None:
    dataplane, _, _ = plane()
    refused(call(dataplane, headers=[(b"content-length", length)]), 413)


# -- the worker ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model(iris_onnx: Path) -> OnnxModel:
    return OnnxModel(iris_onnx)


@pytest.fixture(scope="module")
def worker(model: OnnxModel) -> Worker:
    return Worker("iris", "1", model=model)


def _reply(reply: tuple[int, bytes, bytes, list[tuple[bytes, bytes]]], status: int) -> dict[str, Any]:
    code, ctype, payload, _extra = reply
    assert code == status, payload
    assert ctype == b"application/json" and len(payload) < 1000
    return json.loads(payload)


@pytest.mark.parametrize("body", [DEEP, b'{"data": ' + DEEP + b"}", b'{"a":' * 1000 + b"1" + b"}" * 1000, b"",
                                  b"\xff", b'{"data": [[1' + b"0" * 400 + b", 1, 1, 1]]}",
                                  b'{"data": [[1e999, 1, 1, 1]]}', b'{"data": "abc"}', b"null"])
def test_bad_score_bodies_are_the_inputs_fault(worker: Worker, body: bytes) -> None:
    reply = worker.handle("POST", "/score", body)
    assert _reply(reply, 400)["message"] and (b"x-appliance-input-error", b"1") in reply[3]


@pytest.mark.parametrize("body", [DEEP, b'{"inputs": ' + DEEP + b"}", b"", b"[]", b"5"])
def test_bad_infer_bodies_are_400(worker: Worker, body: bytes) -> None:
    assert _reply(worker.handle("POST", "/v2/models/iris/infer", body), 400)["error"]


@pytest.mark.parametrize("length", [b"1" * 5000, b"0", b"abc", b"99999999999999999999"])
def test_bad_binary_header_lengths_are_400(worker: Worker, length: bytes) -> None:
    body = json.dumps({"inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP32",
                                   "parameters": {"binary_data_size": 16}}]}).encode() + b"\x00" * 16
    _reply(worker.handle("POST", "/v2/models/iris/infer", body, length), 400)


def test_the_worker_quotes_back_no_long_path(worker: Worker) -> None:
    assert _reply(worker.handle("POST", "/v2/models/" + "m" * 10_000 + "/infer", b"{}"), 404)
    assert _reply(worker.handle("GET", "/v2/models/iris/versions/" + "9" * 10_000, b""), 404)
    assert _reply(worker.handle("GET", "/" + "p" * 10_000, b""), 404)


TENSOR = {"name": "features", "shape": [2, 4], "datatype": "FP32", "data": [x for row in ROWS for x in row]}


def _with(**changes: Any) -> dict[str, Any]:
    return {"inputs": [{k: v for k, v in {**TENSOR, **changes}.items() if v is not None}]}


BAD_INPUTS: dict[str, tuple[dict[str, Any], str]] = {
    "no inputs": ({}, '"inputs"'),
    "inputs an object": ({"inputs": TENSOR}, '"inputs"'),
    "a tensor not an object": ({"inputs": [1]}, '"name"'),
    "name missing": (_with(name=None), '"name"'),
    "name a list": (_with(name=["features"]), '"name"'),
    "unknown name": (_with(name="x" * 500), "unknown input 'xxxx"),
    "given twice": ({"inputs": [TENSOR, TENSOR]}, "twice"),
    "shape missing": (_with(shape=None), '"shape"'),
    "shape a string": (_with(shape="2,4"), '"shape"'),
    "shape negative": (_with(shape=[-1, 4]), "non-negative"),
    "shape of floats": (_with(shape=[2.0, 4]), '"shape"'),
    "shape of booleans": (_with(shape=[True, 4]), '"shape"'),
    "shape huge": (_with(shape=[10**30, 4]), "does not fit"),
    "shape not the data's": (_with(shape=[4, 4]), "does not fit"),
    "datatype missing": (_with(datatype=None), '"datatype" must be \'FP32\'; got null'),
    "datatype unknown": (_with(datatype="FP99"), "got a string 'FP99'"),
    "datatype a list": (_with(datatype=["FP32"]), '"datatype"'),
    "data missing": (_with(data=None), '"data"'),
    "data a string": (_with(data="abc"), "does not fit"),
    "data huge integers": (_with(data=[10**400] * 8), "does not fit"),
    "data ragged": (_with(data=[[1, 2, 3, 4], [1]]), "does not fit"),
    "parameters a string": (_with(parameters="x"), '"parameters" must be an object'),
    "request parameters a list": ({**_with(), "parameters": [1]}, "the request: \"parameters\""),
    "binary size a string": (_with(data=None, parameters={"binary_data_size": "16"}), "binary_data_size"),
    "binary size negative": (_with(data=None, parameters={"binary_data_size": -1}), "binary_data_size"),
    "binary past the end": (_with(data=None, parameters={"binary_data_size": 32}), "only 0 bytes"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_v2_inputs_are_checked_before_numpy_sees_them(model: OnnxModel, case: str) -> None:
    request, expected = BAD_INPUTS[case]
    with pytest.raises(BadInput) as refused_input:
        model.v2_inputs(request)
    assert expected in str(refused_input.value) and len(str(refused_input.value)) < 400


BAD_OUTPUTS: dict[str, tuple[Any, str]] = {
    "a number": ([1], '"name"'), "a string": ("label", '"outputs" must be a list'),
    "an object": ({"name": "label"}, '"outputs" must be a list'), "no name": ([{}], '"name"'),
    "name a list": ([{"name": ["label"]}], '"name"'), "unknown": ([{"name": "n" * 500}], "unknown output 'nnn"),
    "parameters a string": ([{"name": "label", "parameters": "x"}], '"parameters"'),
}


@pytest.mark.parametrize("case", BAD_OUTPUTS)
def test_v2_outputs_are_checked(model: OnnxModel, case: str) -> None:
    outputs, expected = BAD_OUTPUTS[case]
    with pytest.raises(BadInput) as refused_output:
        model.v2_outputs({"outputs": outputs})
    assert expected in str(refused_output.value) and len(str(refused_output.value)) < 400


def test_good_v2_requests_still_infer(model: OnnxModel) -> None:
    assert model.v2_outputs({}) == ["label", "probabilities"]
    assert model.v2_outputs({"outputs": []}) == ["label", "probabilities"]
    assert model.v2_outputs({"outputs": [{"name": "label", "parameters": {"binary_data": False}}]}) == ["label"]
    [label] = model.infer_v2({**_with(parameters={}), "outputs": [{"name": "label"}]})
    assert label == {"name": "label", "datatype": "INT64", "shape": [2], "data": [0, 2]}
    binary = model.infer_v2(_with(data=None, parameters={"binary_data_size": 32}),
                            np.asarray(ROWS, dtype=np.float32).tobytes())
    assert binary[0]["data"] == [0, 2]


def test_a_deployment_in_traffic_but_not_yet_created_is_a_503_naming_it() -> None:
    """Traffic may name a deployment whose environment is still building (it has no runtime yet): each
    request is a JSON 503 saying so, with its request id and its row, never a 500."""
    dataplane, recorder, deployments = plane()
    del deployments["blue"]  # the route's own mapping: blue is in traffic, with no runtime
    body = refused(call(dataplane), 503)
    assert "'blue'" in body["message"] and "not ready" in body["message"]
    [row] = recorder.rows
    assert row[3] == "blue" and row[6] == 503
