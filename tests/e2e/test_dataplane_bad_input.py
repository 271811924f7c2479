"""Zero 5xx from bad input: malformed, deep, huge, wrong-typed bodies, wrong methods, odd paths and
headers sent to the data plane of one real daemon, to a no-code ONNX deployment served in process, the
same model under `runtime: process`, and a score.py deployment. Every answer is a 4xx, JSON, with an
`x-request-id`; and a request that fails authentication or names no endpoint leaves no row in the
request log."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import Daemon

EP = "bad-input"
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.2, 3.4, 5.4, 2.3]]
NO_CODE = ["nocode", "proc"]  # in process, and the same model in a child process
ALL = [*NO_CODE, "script"]
SCRIPT = "def init():\n    pass\n\ndef run(raw_data):\n    return {'length': len(raw_data)}\n"
DEEP = b"[" * 1000 + b"]" * 1000


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, iris_onnx: Path) -> Iterator[tuple[Daemon, httpx.Client]]:
    """One daemon for the whole module, its endpoint with three deployments, and a client holding its key."""
    root = tmp_path_factory.mktemp("bad-input")
    project = root / "project"
    (project / "model").mkdir(parents=True)
    (project / "model" / "model.onnx").write_bytes(iris_onnx.read_bytes())
    (project / "code").mkdir()
    (project / "code" / "score.py").write_text(SCRIPT)
    (project / "endpoint.yml").write_text(f"name: {EP}\nauth_mode: key\n")
    model = "model:\n  name: iris\n  path: ./model/\n"
    (project / "nocode.yml").write_text(f"name: nocode\nendpoint_name: {EP}\n{model}")
    (project / "proc.yml").write_text(f"name: proc\nendpoint_name: {EP}\n{model}runtime: process\n")
    (project / "script.yml").write_text(f"name: script\nendpoint_name: {EP}\n"
                                        "code_configuration:\n  code: ./code\n  scoring_script: score.py\n")
    daemon = Daemon(root / "home").start()
    try:
        daemon.cli("apply", "-f", "endpoint.yml", "-f", "nocode.yml", "-f", "proc.yml", "-f", "script.yml",
                   cwd=project)
        daemon.cli("endpoint", "update", EP, "--traffic", "nocode=100,proc=0,script=0")
        shown = {d: json.loads(daemon.cli("deployment", "show", EP, d, "-o", "json").stdout)["runtime"]
                 for d in ALL}
        assert shown == {"nocode": "inprocess", "proc": "process", "script": "process"}
        with httpx.Client(base_url=f"{daemon.url}/endpoints/{EP}", timeout=30,
                          headers={"authorization": f"Bearer {daemon.key(EP)}"}) as client:
            yield daemon, client
    finally:
        try:
            daemon.stop()
        except subprocess.TimeoutExpired:  # a shutdown that hangs is not this module's subject: no leftover
            assert daemon.proc
            daemon.proc.kill()
            daemon.proc.wait()


def refused(response: httpx.Response, status: int | None = None) -> httpx.Response:
    """A 4xx (this one, if given), JSON, with a request id."""
    what = (response.request.method, str(response.request.url)[:200], response.status_code, response.text[:300])
    assert 400 <= response.status_code < 500, what
    if status is not None:
        assert response.status_code == status, what
    assert response.headers.get("content-type", "").startswith("application/json"), (what, response.headers)
    assert response.headers.get("x-request-id"), what
    if response.request.method != "HEAD":
        assert isinstance(response.json(), dict), what
    return response


def pin(deployment: str, **more: str) -> dict[str, str]:
    return {"azureml-model-deployment": deployment, **more}


def test_the_deployments_serve(served: tuple[Daemon, httpx.Client]) -> None:
    _, client = served
    for deployment in NO_CODE:
        assert client.post("/score", json={"data": ROWS}, headers=pin(deployment)).json()["label"] == [0, 2]
    assert client.post("/score", content=b"abc", headers=pin("script")).json() == {"length": 3}


# -- /score bodies ---------------------------------------------------------------------------------

SCORE_BODIES = {
    "deep array": DEEP,
    "deep in data": b'{"data": ' + DEEP + b"}",
    "deep object": b'{"a":' * 1000 + b"1" + b"}" * 1000,
    "empty": b"",
    "not UTF-8": b"\xff\xfe\x00",
    "not UTF-8 in a string": b'{"data": "\xff"}',
    "truncated": b'{"data": [[1, 2',
    "trailing garbage": b'{"data": [[1, 2, 3, 4]]} x',
    "number out of range": b'{"data": [[1e999, 1, 1, 1]]}',
    "huge integer": b'{"data": [[1' + b"0" * 400 + b", 1, 1, 1]]}",
    "huge negative integer": b'{"data": [[-1' + b"0" * 400 + b", 1, 1, 1]]}",
    "NaN": b'{"data": [[NaN, 1, 1, 1]]}',
    "a string": b'"abc"',
    "a number": b"5",
    "null": b"null",
    "an empty list": b"[]",
    "an empty object": b"{}",
    "data a string": b'{"data": "abc"}',
    "data null": b'{"data": null}',
    "data an object": b'{"data": {"x": 1}}',
    "data of strings": b'{"data": [["a", "b", "c", "d"]]}',
    "data with an object": b'{"data": [[1, 2, 3, {}]]}',
    "data with a list": b'{"data": [[1, 2, 3, [1]]]}',
    "ragged rows": b'{"data": [[1, 2, 3, 4], [1, 2]]}',
    "wrong width": b'{"data": [[1, 2]]}',
    "too many dimensions": b'{"data": [[[[1, 2, 3, 4]]]]}',
    "inputs not an object": b'{"inputs": 5}',
    "inputs of a list": b'{"inputs": [1, 2]}',
    "unknown input": b'{"inputs": {"nope": [[1, 2, 3, 4]]}}',
    "input a string": b'{"inputs": {"features": "x"}}',
    "input_data split, bad": b'{"input_data": {"columns": [1], "data": "x"}}',
    "unknown keys": b'{"rows": [[1, 2, 3, 4]]}',
    "duplicate keys": b'{"data": [[1, 2, 3, 4]], "data": "x"}',
    "XML": b"<data><row>1</row></data>",
}


@pytest.mark.parametrize("deployment", NO_CODE)
@pytest.mark.parametrize("case", SCORE_BODIES)
def test_bad_score_bodies_are_400(served: tuple[Daemon, httpx.Client], deployment: str, case: str) -> None:
    _, client = served
    body = SCORE_BODIES[case]
    response = refused(client.post("/score", content=body, headers=pin(deployment)), 400)
    assert response.json()["message"]
    assert response.headers["azureml-model-deployment"] == deployment
    assert "ms-azureml-model-error-statuscode" not in response.headers  # the input's fault, not the model's


@pytest.mark.parametrize("deployment", NO_CODE)
@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "application/json; charset=latin-1",
                                          "multipart/form-data; boundary=x", "a" * 2000])
def test_content_types_do_not_matter_to_no_code(served: tuple[Daemon, httpx.Client], deployment: str,
                                                content_type: str) -> None:
    _, client = served
    ok = client.post("/score", content=json.dumps({"data": ROWS}),
                     headers=pin(deployment, **{"content-type": content_type}))
    assert ok.status_code == 200 and ok.json()["label"] == [0, 2]
    refused(client.post("/score", content=b"<xml/>", headers=pin(deployment, **{"content-type": content_type})),
            400)


def test_a_script_answers_bad_bodies_as_azmlinfsrv_does(served: tuple[Daemon, httpx.Client]) -> None:
    """run() gets the body as a string; one that isn't UTF-8 is azmlinfsrv's 400, a 424 from the router."""
    _, client = served
    response = refused(client.post("/score", content=b"\xff\xfe", headers=pin("script")), 424)
    assert response.headers["ms-azureml-model-error-statuscode"] == "400"
    assert "UTF-8" in response.json()["message"]
    assert client.post("/score", content=DEEP, headers=pin("script")).json() == {"length": 2000}


# -- Open Inference Protocol bodies ----------------------------------------------------------------

TENSOR = {"name": "features", "shape": [2, 4], "datatype": "FP32", "data": [x for row in ROWS for x in row]}


def infer(**changes: object) -> dict[str, object]:
    """A valid request with the first input tensor's fields changed (None: removed)."""
    tensor = {k: v for k, v in {**TENSOR, **changes}.items() if v is not None}
    return {"inputs": [tensor]}


V2_BODIES: dict[str, object] = {
    # outputs
    "outputs of a number": {**infer(), "outputs": [1]},
    "outputs a string": {**infer(), "outputs": "label"},
    "outputs an object": {**infer(), "outputs": {"name": "label"}},
    "output without a name": {**infer(), "outputs": [{}]},
    "output name a list": {**infer(), "outputs": [{"name": ["label"]}]},
    "output name a number": {**infer(), "outputs": [{"name": 5}]},
    "unknown output": {**infer(), "outputs": [{"name": "nope"}]},
    "output parameters a string": {**infer(), "outputs": [{"name": "label", "parameters": "x"}]},
    # inputs
    "no inputs": {},
    "inputs null": {"inputs": None},
    "inputs a string": {"inputs": "features"},
    "inputs an object": {"inputs": TENSOR},
    "inputs empty": {"inputs": []},
    "input a number": {"inputs": [1]},
    "input null": {"inputs": [None]},
    "input without a name": infer(name=None),
    "input without a shape": infer(shape=None),
    "input without data": infer(data=None),
    "input name a list": infer(name=["features"]),
    "input name an object": infer(name={"features": 1}),
    "input name a number": infer(name=5),
    "unknown input": infer(name="nope"),
    "the same input twice": {"inputs": [TENSOR, TENSOR]},
    # shape
    "shape a string": infer(shape="2,4"),
    "shape a number": infer(shape=8),
    "shape of floats": infer(shape=[2.5, 4]),
    "shape of strings": infer(shape=["2", "4"]),
    "shape of lists": infer(shape=[[2], [4]]),
    "shape of booleans": infer(shape=[True, 4]),
    "shape negative": infer(shape=[-1, 4]),
    "shape two negatives": infer(shape=[-2, -4]),
    "shape huge": infer(shape=[10**30, 4]),
    "shape huge integer": infer(shape=[10**400, 4]),
    "shape an object": infer(shape={"a": 1}),
    "shape empty": infer(shape=[]),
    "shape not the data's": infer(shape=[4, 4]),
    "shape not the model's": infer(shape=[8]),
    "shape the wrong rank": infer(shape=[1, 2, 4]),
    "shape too many dimensions": infer(shape=[1] * 100),
    # datatype
    "datatype unknown": infer(datatype="FP99"),
    "datatype not the model's": infer(datatype="INT64"),
    "datatype a number": infer(datatype=5),
    "datatype a list": infer(datatype=["FP32"]),
    "datatype an object": infer(datatype={"FP32": 1}),
    "datatype empty": infer(datatype=""),
    "datatype missing": infer(datatype=None),
    # data
    "data a string": infer(data="abc"),
    "data an object": infer(data={"a": 1}),
    "data of strings": infer(data=["a"] * 8),
    "data of objects": infer(data=[{}] * 8),
    "data ragged": infer(data=[[1, 2, 3, 4], [1, 2]]),
    "data too short": infer(data=[1, 2, 3]),
    "data huge integer": infer(data=[10**400] + [1] * 7),
    "data empty": infer(data=[]),
    # parameters
    "parameters a string": infer(parameters="x"),
    "parameters a list": infer(parameters=[1]),
    "binary size a string": {"inputs": [{**infer(data=None)["inputs"][0], "parameters": {"binary_data_size": "x"}}]},
    "binary size negative": {"inputs": [{**infer(data=None)["inputs"][0], "parameters": {"binary_data_size": -1}}]},
    "binary size huge": {"inputs": [{**infer(data=None)["inputs"][0],
                                     "parameters": {"binary_data_size": 10**30}}]},
    "binary size a float": {"inputs": [{**infer(data=None)["inputs"][0], "parameters": {"binary_data_size": 1.5}}]},
    "binary size with no binary": {"inputs": [{**infer(data=None)["inputs"][0],
                                               "parameters": {"binary_data_size": 32}}]},
    "request parameters a string": {**infer(), "parameters": "x"},
    # the body itself
    "a list": [TENSOR],
    "a string": "inputs",
    "a number": 5,
    "null": None,
}
V2_RAW = {"deep": DEEP, "deep inputs": b'{"inputs": ' + DEEP + b"}", "empty": b"", "not UTF-8": b"\xff\xfe",
          "truncated": b'{"inputs": [', "number out of range": b'{"inputs": [{"name": "features", "shape": '
                                                              b'[1, 4], "data": [1e999, 1, 1, 1]}]}'}


def _v2_body(case: str) -> bytes:
    if case in V2_RAW:
        return V2_RAW[case]
    return json.dumps(V2_BODIES[case]).encode()


@pytest.mark.parametrize("deployment", NO_CODE)
@pytest.mark.parametrize("case", [*V2_BODIES, *V2_RAW])
def test_bad_infer_bodies_are_400(served: tuple[Daemon, httpx.Client], deployment: str, case: str) -> None:
    _, client = served
    response = refused(client.post("/v2/models/iris/infer", content=_v2_body(case), headers=pin(deployment)), 400)
    assert response.json()["error"]


@pytest.mark.parametrize("deployment", NO_CODE)
@pytest.mark.parametrize("length", ["abc", "-1", "0", "99999999", "1" + "0" * 30, "5"])
def test_bad_binary_header_lengths(served: tuple[Daemon, httpx.Client], deployment: str, length: str) -> None:
    _, client = served
    body = json.dumps({"inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP32",
                                   "parameters": {"binary_data_size": 16}}]}).encode() + b"\x00" * 16
    response = client.post("/v2/models/iris/infer", content=body,
                           headers=pin(deployment, **{"inference-header-content-length": length}))
    refused(response, 400)


@pytest.mark.parametrize("deployment", NO_CODE)
def test_a_valid_infer_still_works(served: tuple[Daemon, httpx.Client], deployment: str) -> None:
    _, client = served
    response = client.post("/v2/models/iris/infer", json={**infer(), "id": "x-1",
                                                         "outputs": [{"name": "label"}]}, headers=pin(deployment))
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["data"] == [0, 2] and response.json()["id"] == "x-1"


def test_a_script_has_no_open_inference_protocol(served: tuple[Daemon, httpx.Client]) -> None:
    _, client = served
    refused(client.post("/v2/models/iris/infer", json=infer(), headers=pin("script")), 404)


# -- methods ----------------------------------------------------------------------------------------

WRONG_METHODS = [
    ("PUT", "/score", "GET, POST, OPTIONS"), ("DELETE", "/score", "GET, POST, OPTIONS"),
    ("PATCH", "/score", "GET, POST, OPTIONS"), ("HEAD", "/score", "GET, POST, OPTIONS"),
    ("POST", "/swagger.json", "GET"), ("PUT", "/swagger.json", "GET"), ("DELETE", "/swagger.json", "GET"),
    ("POST", "/v2", "GET"), ("POST", "/v2/health/live", "GET"), ("DELETE", "/v2/health/ready", "GET"),
    ("PUT", "/v2/models/iris", "GET"), ("POST", "/v2/models/iris/ready", "GET"),
    ("GET", "/v2/models/iris/infer", "POST"), ("PUT", "/v2/models/iris/versions/1/infer", "POST"),
    ("HEAD", "/v2/models/iris/infer", "POST"),
]


@pytest.mark.parametrize("deployment", ALL)
@pytest.mark.parametrize(("method", "path", "allow"), WRONG_METHODS)
def test_wrong_methods_are_405(served: tuple[Daemon, httpx.Client], deployment: str, method: str, path: str,
                               allow: str) -> None:
    _, client = served
    response = refused(client.request(method, path, content=b"{}", headers=pin(deployment)), 405)
    assert response.headers["allow"] == allow


# -- paths -------------------------------------------------------------------------------------------

ODD_PATHS = ["/score%00", "/sc%00ore", "/%00", "/score/", "/score/x", "/SCORE", "/score%0D%0AHost:%20evil",
             "/score%20HTTP/1.1", "/swagger.json/x", "/sc%C3%B6re", "/%E2%98%83", "/nowhere", "/.%2e/score",
             "/score%2F", "/" + "a" * 10_000, "/v2/models/ir%00is/infer", "/v2/models/%E2%98%83/infer",
             "/v2/models/iris%0D%0AX-Evil:%201/infer", "/v2/models/" + "m" * 10_000 + "/infer", "/v2/nowhere",
             "/v2/models/iris/versions/9/infer", "/v2/models/iris/infer/x", "/v2/models/iris/versions"]


@pytest.mark.parametrize("deployment", ALL)
@pytest.mark.parametrize("path", ODD_PATHS)
def test_odd_paths_are_404(served: tuple[Daemon, httpx.Client], deployment: str, path: str) -> None:
    _, client = served
    method = "POST" if path.endswith(("infer", "score", "score/")) else "GET"
    response = refused(client.request(method, path, content=json.dumps(infer()), headers=pin(deployment)), 404)
    assert len(response.content) < 1000  # an overlong path is not echoed back whole


@pytest.mark.parametrize("endpoint", [f"{EP}%00", "%00", "e" * 10_000, "b%C3%A4d", f"{EP}%0D%0Ax", f"{EP}%2Fscore",
                                      "", " ", "%FF"])
def test_unknown_endpoints_are_404(served: tuple[Daemon, httpx.Client], endpoint: str) -> None:
    daemon, client = served
    response = refused(httpx.post(f"{daemon.url}/endpoints/{endpoint}/score", json={"data": ROWS},
                                  headers=client.headers), 404)
    assert len(response.content) < 1000


@pytest.mark.parametrize(("host", "method", "path", "status"), [
    ("nope.localhost", "POST", "/score", 404), ("e" * 200 + ".localhost", "POST", "/score", 404),
    (f"{EP}.localhost", "PUT", "/score", 405), (f"{EP}.localhost", "POST", "/score%00", 404),
    (f"{EP}.localhost", "POST", "/nowhere", 404), (".localhost", "POST", "/score", 404),
])
def test_endpoints_named_by_host(served: tuple[Daemon, httpx.Client], host: str, method: str, path: str,
                                 status: int) -> None:
    daemon, client = served
    refused(httpx.request(method, f"{daemon.url}{path}", content=b"{}",
                          headers={**client.headers, "host": f"{host}:{daemon.port}"}), status)


# -- headers -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("authorization", [b"", b"Bearer", b"Basic abc", b"bearer \xff\xfe",
                                           b"Bearer " + b"k" * 8000, b"\x80\x81", b"Bearer a b c"])
def test_bad_credentials_are_401(served: tuple[Daemon, httpx.Client], authorization: bytes) -> None:
    daemon, _ = served
    response = httpx.post(f"{daemon.url}/endpoints/{EP}/score", json={"data": ROWS},
                          headers=[(b"authorization", authorization)])
    refused(response, 401)


@pytest.mark.parametrize("deployment", ALL)
def test_odd_headers(served: tuple[Daemon, httpx.Client], deployment: str) -> None:
    _, client = served
    refused(client.post("/score", json={"data": ROWS}, headers=pin(deployment, **{"x-request-id": "r" * 101})), 431)
    refused(client.post("/score", json={"data": ROWS},
                        headers=pin(deployment, **{"x-ms-client-request-id": "c" * 101})), 431)
    # An odd request id is still an id: no 5xx, and it comes back.
    for request_id in [b"\xff\xfe", b"\xc3\xa9t\xc3\xa9", b"a b"]:
        response = client.post("/score", content=b"[" * 1000,
                               headers=[(b"azureml-model-deployment", deployment.encode()),
                                        (b"x-request-id", request_id)])
        assert response.status_code < 500 and dict(response.headers.raw)[b"x-request-id"] == request_id


@pytest.mark.parametrize("name", [b"teal", b"t" * 10_000, b"\xff\xfe", b"", b"NOCODE", b"no code"])
def test_unknown_pinned_deployments_are_404(served: tuple[Daemon, httpx.Client], name: bytes) -> None:
    _, client = served
    response = refused(client.post("/score", json={"data": ROWS}, headers=[(b"azureml-model-deployment", name)]),
                       404)
    assert len(response.content) < 1000 and "nocode, proc, script" in response.json()["message"]


# -- the request log -------------------------------------------------------------------------------

def test_refused_strangers_cost_no_row(served: tuple[Daemon, httpx.Client]) -> None:
    daemon, client = served

    def written() -> int:
        assert daemon.api("GET", f"/endpoints/{EP}/logs", params={"limit": 1}).status_code == 200  # flushes
        return daemon.api("GET", "/request-log").json()["written"]

    before = written()
    with httpx.Client(base_url=daemon.url, timeout=30) as stranger:
        for _ in range(20):
            assert stranger.post(f"/endpoints/{'x' * 10_000}/score", content=b"{}").status_code == 404
            # Past the server's cap on a request's head, refused before the data plane sees it.
            assert stranger.post(f"/endpoints/{'x' * 60_000}/score", content=b"{}").status_code in (404, 431)
            assert stranger.post(f"/endpoints/{EP}/score", content=b"{}").status_code == 401
            assert stranger.post(f"/endpoints/{EP}/score", content=b"{}",
                                 headers={"authorization": "Bearer wrong"}).status_code == 401
            assert stranger.get("/endpoints/nowhere/v2/health/ready").status_code == 404
    assert written() == before
    status = daemon.api("GET", "/request-log").json()  # counted instead
    assert status["not_logged_unauthenticated"] >= 40 and status["not_logged_unknown_endpoint"] >= 40
    # An unknown pinned deployment costs one row, with the name not stored as sent.
    response = client.post("/score", json={"data": ROWS},
                           headers={"azureml-model-deployment": "t" * 5000, "x-request-id": "long-pin"})
    assert response.status_code == 404
    assert written() == before + 1
    [row] = [r for r in daemon.api("GET", f"/endpoints/{EP}/logs", params={"limit": 10_000}).json()
             if r["request_id"] == "long-pin"]
    assert row["status"] == 404 and len(row["deployment"]) <= 64
