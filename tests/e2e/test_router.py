"""The router: several deployments per endpoint, traffic, mirroring, pinning, auth, admission,
the Open Inference Protocol and the request log, against a real daemon and real workers."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import uuid
from collections import Counter
from pathlib import Path

import duckdb
import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from conftest import APPLIANCE, Daemon, wait_until

from appliance.router import tokens

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.2, 3.4, 5.4, 2.3]]


def deployment_yaml(name: str, *, model: bool = True, script: str | None = None, extra: str = "") -> str:
    text = f"name: {name}\nendpoint_name: my-ep\n"
    if model:
        text += "model:\n  name: iris\n  path: ./model/\n"
    if script:
        text += f"code_configuration:\n  code: ./{script}\n  scoring_script: score.py\n"
    return text + extra


def scoring_script(project: Path, folder: str, body: str) -> None:
    (project / folder).mkdir(exist_ok=True)
    (project / folder / "score.py").write_text(body)


SLOW = ("import time\ndef init():\n    pass\n"
        "def run(raw_data):\n    time.sleep({seconds})\n    return {{'slow': True}}\n")
BROKEN = "def init():\n    pass\ndef run(raw_data):\n    raise RuntimeError('broken on purpose')\n"


@pytest.fixture
def blue_green(daemon: Daemon, iris_project: Path) -> Path:
    (iris_project / "green.yml").write_text(deployment_yaml("green"))
    applied = daemon.cli("apply", "-f", "endpoint.yml", "-f", "blue.yml", "-f", "green.yml", cwd=iris_project)
    # With two deployments nobody takes traffic by default (Azure's rule): the apply says so, and how.
    assert "no live traffic" in applied.stderr and "endpoint update my-ep --traffic blue=100" in applied.stderr
    assert daemon.score("my-ep", {"data": ROWS}).status_code == 404
    daemon.cli("endpoint", "update", "my-ep", "--traffic", "blue=100,green=0")
    return iris_project


def test_traffic_rules_and_events(daemon: Daemon, blue_green: Path) -> None:
    daemon.cli("endpoint", "update", "my-ep", "--traffic", "blue=90 green=10")  # Azure's form
    shown = json.loads(daemon.cli("endpoint", "show", "my-ep", "-o", "json").stdout)
    assert shown["traffic"] == {"blue": 90, "green": 10}

    refused = {
        ("--traffic", "blue=80,green=10"): "add up to 0 or 100",
        ("--mirror-traffic", "green=60"): "at most 50%",
        ("--mirror-traffic", "blue=10"): "set its live traffic to 0 first",
        ("--traffic", "blue=100,teal=0"): "'teal' does not exist",
        ("--traffic", "blue:100"): "not of the form",
    }
    for args, message in refused.items():
        result = daemon.cli("endpoint", "update", "my-ep", *args, check=False)
        assert result.returncode != 0 and message in result.stderr, (args, result.stderr)
    # A refused change changed nothing.
    assert json.loads(daemon.cli("endpoint", "show", "my-ep", "-o", "json").stdout)["traffic"] == {
        "blue": 90, "green": 10}

    daemon.cli("endpoint", "update", "my-ep", "--traffic", "blue=100,green=0", "--mirror-traffic", "green=20")
    deleted = daemon.cli("deployment", "delete", "my-ep", "blue", check=False)
    assert deleted.returncode != 0 and "100% of live traffic" in deleted.stderr

    # Traffic from YAML, applied after the deployments it names.
    (blue_green / "endpoint.yml").write_text("name: my-ep\nauth_mode: key\ntraffic:\n  blue: 50\n  green: 50\n")
    clash = daemon.cli("apply", "-f", "endpoint.yml", cwd=blue_green, check=False)  # green is still mirrored
    assert clash.returncode != 0 and "endpoint.yml" in clash.stderr and "mirror_traffic.green" in clash.stderr
    (blue_green / "endpoint.yml").write_text(
        "name: my-ep\nauth_mode: key\ntraffic:\n  blue: 50\n  green: 50\nmirror_traffic:\n  green: 0\n")
    daemon.cli("apply", "-f", "endpoint.yml", cwd=blue_green)
    assert json.loads(daemon.cli("endpoint", "show", "my-ep", "-o", "json").stdout)["traffic"] == {
        "blue": 50, "green": 50}

    events = daemon.api("GET", "/events", params={"subject": "my-ep"}).json()
    changes = [e["detail"]["traffic"] for e in events if e["kind"] == "traffic.changed"]
    assert {"blue": 90, "green": 10} in changes and {"blue": 50, "green": 50} in changes


async def _load(daemon: Daemon, key: str, total: int, concurrency: int,
                on_progress: asyncio.Event | None = None) -> list[httpx.Response]:
    results: list[httpx.Response] = []
    async with httpx.AsyncClient(base_url=daemon.url, timeout=30,
                                 headers={"authorization": f"Bearer {key}"}) as client:
        async def worker(n: int) -> None:
            for _ in range(n):
                results.append(await client.post("/endpoints/my-ep/score", json={"data": ROWS}))
        await asyncio.gather(*(worker(total // concurrency) for _ in range(concurrency)))
    return results


def test_split_is_honoured(daemon: Daemon, blue_green: Path) -> None:
    daemon.cli("endpoint", "update", "my-ep", "--traffic", "blue=90,green=10")
    responses = asyncio.run(_load(daemon, daemon.key("my-ep"), 2000, 8))
    assert all(r.status_code == 200 for r in responses)
    served = Counter(r.headers["azureml-model-deployment"] for r in responses)
    assert abs(served["blue"] / 2000 - 0.90) <= 0.03 and abs(served["green"] / 2000 - 0.10) <= 0.03, served


def test_traffic_changes_under_load_fail_nothing(daemon: Daemon, blue_green: Path) -> None:
    key = daemon.key("my-ep")

    async def scenario() -> list[httpx.Response]:
        load = asyncio.create_task(_load(daemon, key, 1200, 8))
        async with httpx.AsyncClient(base_url=daemon.url, headers=daemon.admin, timeout=30) as admin:
            for i in range(12):
                share = (i * 37) % 101
                r = await admin.post("/api/v1/endpoints/my-ep/traffic",
                                     json={"traffic": {"blue": share, "green": 100 - share}})
                assert r.status_code == 200, r.text
                await asyncio.sleep(0.05)
            r = await admin.post("/api/v1/endpoints/my-ep/traffic", json={"traffic": {"blue": 0, "green": 100}})
            assert r.status_code == 200
        return await load

    responses = asyncio.run(scenario())
    assert [(r.status_code, r.text) for r in responses if r.status_code != 200] == []
    # The last change applies to the very next request.
    assert daemon.score("my-ep", {"data": ROWS}).headers["azureml-model-deployment"] == "green"


def test_mirroring_never_touches_the_live_answer(daemon: Daemon, blue_green: Path) -> None:
    scoring_script(blue_green, "slow", SLOW.format(seconds=2))
    scoring_script(blue_green, "broken", BROKEN)
    (blue_green / "slow.yml").write_text(deployment_yaml("slow", model=False, script="slow",
                                                         extra="request_settings:\n  request_timeout_ms: 10000\n"
                                                               "  max_concurrent_requests_per_instance: 50\n"))
    (blue_green / "broken.yml").write_text(deployment_yaml("broken", model=False, script="broken"))
    daemon.cli("apply", "-f", "slow.yml", "-f", "broken.yml", cwd=blue_green)
    key = daemon.key("my-ep")
    baseline = daemon.score("my-ep", {"data": ROWS}, key=key).json()

    # One keep-alive connection, as load generators use: a copy still running after its live answer
    # never holds up the caller's next request on that connection.
    client = httpx.Client(base_url=daemon.url, headers={"authorization": f"Bearer {key}"}, timeout=30)
    for mirror in ("slow=50", "broken=50"):
        daemon.cli("endpoint", "update", "my-ep", "--traffic", "blue=100,green=0", "--mirror-traffic", mirror)
        for _ in range(30):
            r = client.post("/endpoints/my-ep/score", json={"data": ROWS})
            assert r.status_code == 200 and r.json() == baseline
            assert r.headers["azureml-model-deployment"] == "blue"
            assert r.elapsed.total_seconds() < 1.0  # the mirror sleeps 2 s: its delay never reaches here
    client.close()
    # Pinned requests are never mirrored.
    for i in range(20):
        daemon.score("my-ep", {"data": ROWS}, key=key, **{"azureml-model-deployment": "green",
                                                           "x-request-id": f"pinned-{i}"})

    def mirrored_rows() -> list[dict]:
        rows = daemon.api("GET", "/endpoints/my-ep/logs", params={"limit": 1000}).json()
        return [r for r in rows if r["mirrored"]]

    # ~50% of 30 requests per mirror target; the slow ones land 2 s later.
    wait_until(lambda: sum(r["deployment"] == "slow" for r in mirrored_rows()) >= 5, 30, "slow mirror rows")
    rows = mirrored_rows()
    assert not [r for r in rows if r["request_id"].startswith("pinned-")]
    assert {r["status"] for r in rows if r["deployment"] == "broken"} == {500}

    report = json.loads(daemon.cli("endpoint", "mirror-report", "my-ep", "--since", "10m", "-o", "json").stdout)
    assert report["pairs"] >= 10
    assert report["agreement_rate"] == 0.0  # neither mirror answers what iris answers
    assert report["mirror_errors"] >= 5


def test_pinning_and_request_ids(daemon: Daemon, blue_green: Path) -> None:
    daemon.cli("endpoint", "update", "my-ep", "--traffic", "blue=100,green=0", "--mirror-traffic", "green=10")
    key = daemon.key("my-ep")
    pinned = daemon.score("my-ep", {"data": ROWS}, key=key, **{"azureml-model-deployment": "green"})
    assert pinned.status_code == 200 and pinned.headers["azureml-model-deployment"] == "green"
    unknown = daemon.score("my-ep", {"data": ROWS}, key=key, **{"azureml-model-deployment": "teal"})
    assert unknown.status_code == 404 and "blue, green" in unknown.json()["message"]
    kept = daemon.score("my-ep", {"data": ROWS}, key=key, **{"x-request-id": "abc-123"})
    assert kept.headers["x-request-id"] == "abc-123"
    client_id = daemon.score("my-ep", {"data": ROWS}, key=key, **{"x-ms-client-request-id": "mine-1"})
    assert client_id.headers["x-request-id"] == "mine-1"
    fresh = {daemon.score("my-ep", {"data": ROWS}, key=key).headers["x-request-id"] for _ in range(3)}
    assert len(fresh) == 3 and all(uuid.UUID(f).version == 4 and str(uuid.UUID(f)) == f for f in fresh)
    too_long = daemon.score("my-ep", {"data": ROWS}, key=key, **{"x-request-id": "x" * 101})
    assert too_long.status_code == 431 and "100 characters" in too_long.json()["message"]
    head = httpx.head(f"{daemon.url}/endpoints/my-ep/score", headers={"authorization": f"Bearer {key}"},
                      timeout=10)
    assert head.status_code == 405 and head.headers["allow"] == "GET, POST, OPTIONS"  # as azmlinfsrv's routes


def test_keys_and_tokens(daemon: Daemon, blue_green: Path) -> None:
    old = json.loads(daemon.cli("endpoint", "get-credentials", "my-ep").stdout)
    daemon.cli("endpoint", "regenerate-keys", "my-ep", "--key-type", "primary")
    new = json.loads(daemon.cli("endpoint", "get-credentials", "my-ep").stdout)
    assert new["primaryKey"] != old["primaryKey"] and new["secondaryKey"] == old["secondaryKey"]
    assert daemon.score("my-ep", {"data": ROWS}, key=old["primaryKey"]).status_code == 401
    assert daemon.score("my-ep", {"data": ROWS}, key=old["secondaryKey"]).status_code == 200
    daemon.cli("endpoint", "regenerate-keys", "my-ep", "--key-type", "secondary", "--value", "s" * 24)
    assert daemon.score("my-ep", {"data": ROWS}, key="s" * 24).status_code == 200

    (blue_green / "tok.yml").write_text("name: tok-ep\nauth_mode: aml_token\n")
    (blue_green / "tok-blue.yml").write_text("name: blue\nendpoint_name: tok-ep\nmodel:\n  path: ./model/\n")
    daemon.cli("apply", "-f", "tok.yml", "-f", "tok-blue.yml", cwd=blue_green)
    token = json.loads(daemon.cli("endpoint", "get-token", "tok-ep").stdout)
    assert token["expiryTimeUtc"] > token["refreshAfterTimeUtc"] and token["tokenType"] == "Bearer"

    def call(secret: str) -> httpx.Response:
        return httpx.post(f"{daemon.url}/endpoints/tok-ep/score", json={"data": ROWS},
                          headers={"authorization": f"Bearer {secret}"})

    assert call(token["accessToken"]).status_code == 200
    forged = token["accessToken"][:-4] + ("AAAA" if not token["accessToken"].endswith("AAAA") else "BBBB")
    assert call(forged).status_code == 401
    secret = (daemon.home / "token.key").read_text().strip().encode()
    endpoint_id = token["accessToken"].split(".")[2]  # apl2.<name>.<endpoint id>.<expiry>.<signature>
    expired, _ = tokens.issue(secret, "tok-ep", endpoint_id, 60, now=0)
    response = call(expired)
    assert response.status_code == 401 and "expired" in response.json()["message"]
    other, _ = tokens.issue(secret, "my-ep", endpoint_id, 600)
    assert call(other).status_code == 401
    assert httpx.post(f"{daemon.url}/endpoints/tok-ep/score", json={"data": ROWS}).status_code == 401
    refused = daemon.cli("endpoint", "regenerate-keys", "tok-ep", "--key-type", "primary", check=False)
    assert refused.returncode != 0 and "aml_token" in refused.stderr
    (blue_green / "req.json").write_text(json.dumps({"data": ROWS}))
    invoked = daemon.cli("endpoint", "invoke", "tok-ep", "--request-file", "req.json", cwd=blue_green)
    assert json.loads(invoked.stdout)["label"] == [0, 2]  # the CLI fetched a token by itself


def test_admission_timeouts_and_model_errors(daemon: Daemon, iris_project: Path) -> None:
    scoring_script(iris_project, "slow", SLOW.format(seconds=0.6))
    scoring_script(iris_project, "broken", BROKEN)
    (iris_project / "slow.yml").write_text(deployment_yaml(
        "slow", model=False, script="slow",
        extra="request_settings:\n  max_concurrent_requests_per_instance: 1\n  max_queue_wait_ms: 100\n"))
    (iris_project / "late.yml").write_text(deployment_yaml(
        "late", model=False, script="slow", extra="request_settings:\n  request_timeout_ms: 200\n"))
    (iris_project / "broken.yml").write_text(deployment_yaml("broken", model=False, script="broken"))
    daemon.cli("apply", "-f", "endpoint.yml", "-f", "blue.yml", "-f", "slow.yml", "-f", "late.yml",
               "-f", "broken.yml", cwd=iris_project)
    key = daemon.key("my-ep")

    async def burst() -> list[int]:
        async with httpx.AsyncClient(base_url=daemon.url, timeout=30, headers={
                "authorization": f"Bearer {key}", "azureml-model-deployment": "slow"}) as client:
            responses = await asyncio.gather(*(client.post("/endpoints/my-ep/score", json={}) for _ in range(4)))
        return sorted(r.status_code for r in responses)

    # Azure's rule: 2 × max_concurrent_requests_per_instance × instance_count in flight (the second waits
    # at the instance), the rest queue for max_queue_wait_ms, then 429.
    assert asyncio.run(burst()) == [200, 200, 429, 429]

    late = daemon.score("my-ep", {}, key=key, **{"azureml-model-deployment": "late"})
    assert late.status_code == 408 and "request_timeout_ms=200" in late.json()["message"]

    broken = daemon.score("my-ep", {}, key=key, **{"azureml-model-deployment": "broken"})
    assert broken.status_code == 424
    assert broken.headers["ms-azureml-model-error-statuscode"] == "500"
    assert broken.headers["ms-azureml-model-error-reason"] == "Internal Server Error"
    assert broken.json()["message"].startswith("An unexpected error occurred in scoring script")

    big = httpx.post(f"{daemon.url}/endpoints/my-ep/score", content=b"[" + b"0," * 1_000_000 + b"0]",
                     headers={"authorization": f"Bearer {key}"})
    assert big.status_code == 413 and "limit" in big.json()["message"]


def test_open_inference_protocol_with_triton_client(daemon: Daemon, iris_project: Path) -> None:
    daemon.cli("apply", "-f", "endpoint.yml", "-f", "blue.yml", cwd=iris_project)
    key = daemon.key("my-ep")

    def auth() -> dict[str, str]:  # a fresh dict each call: tritonclient adds its own headers to it
        return {"Authorization": f"Bearer {key}"}

    client = triton.InferenceServerClient(url=f"127.0.0.1:{daemon.port}/endpoints/my-ep")
    assert client.is_server_live(headers=auth()) and client.is_server_ready(headers=auth())
    assert client.is_model_ready("iris", headers=auth())
    meta = client.get_model_metadata("iris", headers=auth())
    assert meta["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, 4]}]
    assert {o["name"] for o in meta["outputs"]} == {"label", "probabilities"}

    features = triton.InferInput("features", [2, 4], "FP32")
    features.set_data_from_numpy(np.asarray(ROWS, dtype=np.float32))
    result = client.infer("iris", [features], headers=auth(),
                          outputs=[triton.InferRequestedOutput("label", binary_data=False)])
    azure = daemon.score("my-ep", {"data": ROWS}).json()
    assert result.as_numpy("label").tolist() == azure["label"]

    with pytest.raises(triton.InferenceServerException) as refused:
        client.get_model_metadata("resnet", headers=auth())
    assert "'resnet'" in str(refused.value)
    wrong = httpx.post(f"{daemon.url}/endpoints/my-ep/v2/models/iris/infer", headers=auth(),
                       json={"inputs": [{"name": "features", "shape": [1, 3], "datatype": "FP32",
                                         "data": [1, 2, 3]}]})
    assert wrong.status_code == 400 and "error" in wrong.json()
    assert httpx.get(f"{daemon.url}/endpoints/my-ep/v2/health/ready").status_code == 401


def test_request_log_metrics_and_shutdown(daemon: Daemon, blue_green: Path) -> None:
    daemon.cli("endpoint", "update", "my-ep", "--traffic", "blue=50,green=50")
    key = daemon.key("my-ep")
    responses = asyncio.run(_load(daemon, key, 200, 4))
    assert all(r.status_code == 200 for r in responses)
    daemon.score("my-ep", {"data": ROWS}, key="wrong")  # a 401 costs no row: anyone can send them

    rows = json.loads(daemon.cli("endpoint", "logs", "my-ep", "--since", "5m", "--tail", "1000", "-o", "json").stdout)
    live = [r for r in rows if r["status"] == 200]
    assert len(live) == 200 and {r["deployment"] for r in live} == {"blue", "green"}
    assert {r["key_id"] for r in live} == {"primary"} and all(r["instance"] for r in live)
    assert not any(r["status"] == 401 for r in rows)
    only_green = json.loads(daemon.cli("endpoint", "logs", "my-ep", "--deployment", "green", "-o", "json").stdout)
    assert only_green and {r["deployment"] for r in only_green} == {"green"}

    metrics = json.loads(daemon.cli("endpoint", "metrics", "my-ep", "--since", "5m", "-o", "json").stdout)
    by_name = {m["deployment"]: m for m in metrics}
    assert by_name["blue"]["requests"] + by_name["green"]["requests"] == 200
    assert 0 < by_name["blue"]["p50_ms"] <= by_name["blue"]["p95_ms"] <= by_name["blue"]["p99_ms"]
    assert by_name["blue"]["error_rate"] == 0
    table = daemon.cli("endpoint", "metrics", "my-ep").stdout
    assert "blue" in table and "P99" in table

    # `logs --follow` prints requests as they happen.
    followed = daemon.home.parent / "follow.txt"
    with followed.open("w") as out:
        follower = subprocess.Popen([APPLIANCE, "endpoint", "logs", "my-ep", "--follow", "--tail", "1"],
                                    env=daemon.env, stdout=out, stderr=subprocess.STDOUT)
    try:
        daemon.score("my-ep", {"data": ROWS}, key=key, **{"x-request-id": "followed-1"})
        wait_until(lambda: "followed-1" in followed.read_text(), 15, "the followed request to be printed")
    finally:
        follower.terminate()
        follower.wait(10)

    # Shutdown straight after a burst loses no row; no key ever reaches the database.
    asyncio.run(_load(daemon, key, 300, 6))
    assert daemon.stop() == 0
    with duckdb.connect(str(daemon.home / "appliance.duckdb"), read_only=True) as db:
        logged = db.execute("SELECT * FROM request_log").fetchall()
    assert len(logged) > 500 and key not in repr(logged)  # secrets are never logged
    assert not any(key in p.read_text() for p in (daemon.home / "logs").rglob("*.log"))
    daemon.start()
    rows = daemon.api("GET", "/endpoints/my-ep/logs", params={"limit": 10_000}).json()
    assert sum(r["status"] == 200 for r in rows) == 501  # 200 + the followed one + 300


def _logged_ids(daemon: Daemon) -> set[str]:
    return {r["request_id"] for r in daemon.api("GET", "/endpoints/my-ep/logs", params={"limit": 10_000}).json()}


def test_the_request_log_switches_off_and_on_while_serving(daemon: Daemon, blue_green: Path) -> None:
    key = daemon.key("my-ep")
    assert json.loads(daemon.cli("request-log", "-o", "json").stdout)["enabled"] is True
    assert daemon.score("my-ep", {"data": ROWS}, key=key, **{"x-request-id": "logged-1"}).status_code == 200
    assert json.loads(daemon.cli("request-log", "off", "-o", "json").stdout)["enabled"] is False
    assert daemon.score("my-ep", {"data": ROWS}, key=key, **{"x-request-id": "not-logged"}).status_code == 200
    assert json.loads(daemon.cli("request-log", "on", "-o", "json").stdout)["enabled"] is True
    assert daemon.score("my-ep", {"data": ROWS}, key=key, **{"x-request-id": "logged-2"}).status_code == 200
    ids = _logged_ids(daemon)
    assert {"logged-1", "logged-2"} <= ids and "not-logged" not in ids
    status = json.loads(daemon.cli("request-log", "-o", "json").stdout)
    assert status["written"] >= 2 and (status["waiting"], status["dropped"], status["failed"]) == (0, 0, 0)
    assert (status["retention_s"], status["pruned"]) == (7 * 86400, 0)  # a week by default
    assert "enabled" in daemon.cli("request-log").stdout

    # Bad input changes nothing and says what is allowed.
    wrong = daemon.api("PUT", "/request-log", json={"enabled": "maybe"})
    assert wrong.status_code == 400 and "enabled" in wrong.text
    refused = daemon.cli("request-log", "maybe", check=False)
    assert refused.returncode == 2 and "'on', 'off'" in refused.stderr
    assert daemon.api("GET", "/request-log").json()["enabled"] is True

    # `up --no-request-log` starts it off; it can still be switched on.
    assert daemon.stop() == 0
    quiet = Daemon(daemon.home, "--no-request-log", "--request-log-retention", "forever").start()
    try:
        assert quiet.api("GET", "/request-log").json() | {"written": 0} == {
            "enabled": False, "written": 0, "waiting": 0, "dropped": 0, "failed": 0, "retention_s": None, "pruned": 0,
            "max_bytes": 1024 << 20, "not_logged_unauthenticated": 0, "not_logged_unknown_endpoint": 0}
        assert quiet.score("my-ep", {"data": ROWS}, key=key, **{"x-request-id": "started-off"}).status_code == 200
        assert quiet.api("PUT", "/request-log", json={"enabled": True}).json()["enabled"] is True
        assert quiet.score("my-ep", {"data": ROWS}, key=key, **{"x-request-id": "switched-on"}).status_code == 200
        ids = _logged_ids(quiet)
        assert "switched-on" in ids and "started-off" not in ids and "logged-2" in ids
    finally:
        assert quiet.stop() == 0


def test_logged_requests_older_than_the_retention_are_deleted(daemon: Daemon, blue_green: Path) -> None:
    key = daemon.key("my-ep")
    assert daemon.score("my-ep", {"data": ROWS}, key=key, **{"x-request-id": "kept-a-week"}).status_code == 200
    assert "kept-a-week" in _logged_ids(daemon)

    # A bad retention is refused before anything starts, naming the option and what it takes.
    assert daemon.stop() == 0
    refused = subprocess.run([APPLIANCE, "up", "--headless", "--request-log-retention", "a while"], env=daemon.env,
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2
    assert "--request-log-retention" in refused.stderr and "'a while' is not a duration" in refused.stderr

    # Restarted with 3 s: the older rows (that one, and the fixture's 404) go once 3 s old, and so does a new one.
    short = Daemon(daemon.home, "--request-log-retention", "3s").start()
    try:
        wait_until(lambda: _logged_ids(short) == set(), 15, "the older rows to be deleted")
        assert short.api("GET", "/request-log").json()["pruned"] == 2
        assert short.score("my-ep", {"data": ROWS}, key=key, **{"x-request-id": "short-lived"}).status_code == 200
        assert "short-lived" in _logged_ids(short)
        wait_until(lambda: "short-lived" not in _logged_ids(short), 15, "the new row to outlive 3 s and go")
        assert short.api("GET", "/request-log").json()["pruned"] == 3
    finally:
        assert short.stop() == 0


def test_instances_share_load_and_a_dead_one_gets_nothing(daemon: Daemon, iris_project: Path) -> None:
    scoring_script(iris_project, "slow", SLOW.format(seconds=0.3))
    (iris_project / "slow.yml").write_text(deployment_yaml(
        "slow", model=False, script="slow",
        extra="instance_count: 2\nrequest_settings:\n  max_concurrent_requests_per_instance: 1\n"
              "  max_queue_wait_ms: 5000\n"))
    daemon.cli("apply", "-f", "endpoint.yml", "-f", "blue.yml", cwd=iris_project)
    daemon.cli("deployment", "create", "-f", "slow.yml", "--all-traffic", cwd=iris_project)
    assert json.loads(daemon.cli("endpoint", "show", "my-ep", "-o", "json").stdout)["traffic"] == {
        "blue": 0, "slow": 100}
    key = daemon.key("my-ep")

    async def burst(n: int) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=daemon.url, timeout=30,
                                     headers={"authorization": f"Bearer {key}"}) as client:
            return list(await asyncio.gather(*(client.post("/endpoints/my-ep/score", json={}) for _ in range(n))))

    assert [r.status_code for r in asyncio.run(burst(4))] == [200] * 4
    rows = daemon.api("GET", "/endpoints/my-ep/logs", params={"deployment": "slow"}).json()
    assert len({r["instance"] for r in rows}) == 2  # the least busy instance takes the next request

    shown = json.loads(daemon.cli("deployment", "show", "my-ep", "slow", "-o", "json").stdout)
    victim = shown["instances"][0]
    os.kill(victim["pid"], signal.SIGKILL)
    statuses = [daemon.score("my-ep", {}, key=key).status_code for _ in range(10)]
    assert statuses == [200] * 10

    def recovered() -> bool:
        d = json.loads(daemon.cli("deployment", "show", "my-ep", "slow", "-o", "json").stdout)
        states = {i["name"]: i for i in d["instances"]}
        return states[victim["name"]]["state"] == "ready" and states[victim["name"]]["restarts"] == 1

    wait_until(recovered, 30, "the killed instance to be restarted")
