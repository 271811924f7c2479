"""Dynamic batching through the daemon: a deployment opts in with environment variables, concurrent
requests share onnxruntime calls, and every answer is the one the same model gives unbatched."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from batching_models import fixed, rows, tree_classifier
from conftest import Daemon

pytestmark = pytest.mark.e2e

BATCHED = ("environment_variables:\n  APPLIANCE_MAX_BATCH_SIZE: \"32\"\n  APPLIANCE_MAX_QUEUE_DELAY_US: \"500\"\n"
           "request_settings:\n  max_concurrent_requests_per_instance: 32\n")


def deployment(name: str, extra: str = "", model: str = "./model/") -> str:
    return (f"name: {name}\nendpoint_name: my-ep\nmodel:\n  name: forest\n  path: {model}\n"
            f"instance_type: Standard_DS3_v2\ninstance_count: 1\n{extra}")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    tree_classifier(root / "model" / "model.onnx")
    (root / "endpoint.yml").write_text("name: my-ep\nauth_mode: key\ntraffic:\n  blue: 100\n")
    return root


async def send_all(daemon: Daemon, key: str, bodies: list[Any], pin: str) -> list[httpx.Response]:
    headers = {"authorization": f"Bearer {key}", "azureml-model-deployment": pin}
    async with httpx.AsyncClient(base_url=daemon.url, timeout=30,
                                 limits=httpx.Limits(max_connections=len(bodies))) as client:
        return await asyncio.gather(*(client.post("/endpoints/my-ep/score", json=b, headers=headers)
                                      for b in bodies))


@pytest.mark.parametrize("runtime", ["inprocess", "process"])
def test_batched_answers_equal_unbatched_ones(daemon: Daemon, project: Path, runtime: str) -> None:
    (project / "blue.yml").write_text(deployment("blue", BATCHED + f"runtime: {runtime}\n"))
    (project / "green.yml").write_text(deployment("green", "request_settings:\n  max_concurrent_requests_per_instance: "
                                                           f"32\nruntime: {runtime}\n"))
    daemon.cli("apply", "-f", "endpoint.yml", "-f", "blue.yml", "-f", "green.yml", cwd=project)
    shown = json.loads(daemon.cli("deployment", "show", "my-ep", "blue", "-o", "json").stdout)
    assert shown["runtime"] == runtime
    assert "batching on: up to 32 rows" in Path(shown["instances"][0]["log"]).read_text()
    key = daemon.key("my-ep")
    shared = 0
    deadline = time.monotonic() + 60
    rounds = 0
    while shared < 2:  # concurrent requests arrive together often, but not on every round: until some did
        assert time.monotonic() < deadline, "no two requests ever shared a call"
        bodies = [{"data": rows(4, 1 + (i + rounds) % 5, seed=i + 100 * rounds)} for i in range(48)]
        batched = asyncio.run(send_all(daemon, key, bodies, "blue"))
        alone = asyncio.run(send_all(daemon, key, bodies, "green"))
        for body, b, g in zip(bodies, batched, alone, strict=True):
            assert b.status_code == g.status_code == 200, b.text
            assert b.content == g.content  # the same JSON, byte for byte
            assert len(b.json()["label"]) == len(body["data"])
            assert "x-appliance-batch" not in g.headers
        shared = max(int(r.headers["x-appliance-batch"]) for r in batched)
        rounds += 1
    # A bad request among them fails alone, with its own 400.
    bodies = [{"data": rows(4, 2, seed=i)} for i in range(16)] + [{"data": [[1, 2]]}]
    answers = asyncio.run(send_all(daemon, key, bodies, "blue"))
    assert [r.status_code for r in answers] == [200] * 16 + [400]
    assert "'X'" in answers[-1].json()["message"]  # the model's input, named
    if runtime == "inprocess":  # the daemon counts them
        [instance] = json.loads(daemon.cli("deployment", "show", "my-ep", "blue", "-o", "json").stdout)["instances"]
        counts = instance["batching"]
        assert counts["max_batch_size"] == 32 and counts["max_queue_delay_us"] == 500
        assert counts["largest"] >= 2 and counts["calls"] < counts["requests"]


def test_batching_is_refused_where_it_cannot_apply(daemon: Daemon, project: Path) -> None:
    def refused(extra: str, *words: str) -> None:
        (project / "blue.yml").write_text(deployment("blue", extra))
        result = daemon.cli("apply", "-f", "endpoint.yml", "-f", "blue.yml", cwd=project, check=False)
        assert result.returncode != 0
        for word in words:
            assert word in result.stderr, result.stderr

    refused(BATCHED.replace('"32"', '"zero"', 1), "APPLIANCE_MAX_BATCH_SIZE", "'zero'", "2 to 4096")
    refused(BATCHED.replace('"500"', '"5s"'), "APPLIANCE_MAX_QUEUE_DELAY_US", "0 to 1000000")
    refused(BATCHED.replace("32\n", "1\n"), "max_concurrent_requests_per_instance", "2 or more")
    (project / "code").mkdir()
    (project / "code" / "score.py").write_text("def init():\n    pass\ndef run(raw):\n    return 1\n")
    refused(BATCHED + "code_configuration:\n  code: ./code\n  scoring_script: score.py\n", "scoring script",
            "APPLIANCE_MAX_BATCH_SIZE")
    assert json.loads(daemon.cli("endpoint", "list", "-o", "json").stdout) == []  # nothing stored

    # A model whose first dimension is not a batch is served, unbatched, and its log says why.
    fixed(project / "fixed" / "model.onnx")
    (project / "blue.yml").write_text(deployment("blue", BATCHED, model="./fixed/"))
    daemon.cli("apply", "-f", "endpoint.yml", "-f", "blue.yml", cwd=project)
    shown = json.loads(daemon.cli("deployment", "show", "my-ep", "blue", "-o", "json").stdout)
    assert "batching off, served unbatched: input 'x'" in Path(shown["instances"][0]["log"]).read_text()
    answer = daemon.score("my-ep", {"data": [[1, 2, 3, 4]]})
    assert answer.status_code == 200 and answer.json() == [[2, 3, 4, 5]]
