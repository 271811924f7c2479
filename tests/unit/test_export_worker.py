"""What exported images need of the worker: key auth from the environment (a mounted Secret), and the
shard mode an Indexed Job's pods run (in process)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import pytest

from appliance.scoring import auth, shard
from appliance.scoring.app import Worker
from appliance.scoring.onnx_model import OnnxModel
from appliance.scoring.server import Answer

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.2, 3.4, 5.4, 2.3]]


def call(app: Worker, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
         ) -> tuple[int, dict[str, Any]]:
    scope = {"type": "http", "method": method, "path": path,
             "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]}
    answer = app(scope, body)
    status, _, payload = answer if isinstance(answer, tuple) else asyncio.run(_awaited(answer))
    return status, json.loads(payload) if payload[:1] in (b"{", b"[") else {"text": payload.decode()}


async def _awaited(answer: Awaitable[Answer]) -> Answer:
    return await answer


def test_keys_from_a_secret_shaped_folder_and_the_environment(tmp_path: Path) -> None:
    secret = tmp_path / "keys"
    (secret / "..2026_data").mkdir(parents=True)  # what a mounted Secret also holds
    (secret / "primaryKey").write_text("first\n")
    (secret / "secondaryKey").write_text("second")
    assert auth.load({"APPLIANCE_ENDPOINT_KEYS_FILE": str(secret)}) == (b"first", b"second")
    assert auth.load({"APPLIANCE_ENDPOINT_KEYS": "a, b c"}) == (b"a", b"b", b"c")
    assert auth.load({}) is None
    with pytest.raises(auth.NoKeys):
        auth.load({"APPLIANCE_ENDPOINT_KEYS": " "})  # asked for, none given: refuse to start
    with pytest.raises(auth.NoKeys):
        auth.load({"APPLIANCE_ENDPOINT_KEYS_FILE": str(tmp_path / "missing")})


def test_score_and_infer_need_a_key_health_stays_open(iris_onnx: Path) -> None:
    app = Worker("iris", "1", model=OnnxModel(iris_onnx), keys=(b"first", b"second"))
    body = json.dumps({"data": ROWS}).encode()
    infer = json.dumps({"inputs": [{"name": "features", "shape": [2, 4], "datatype": "FP32",
                                    "data": [x for r in ROWS for x in r]}]}).encode()
    for path, payload in (("/score", body), ("/v2/models/iris/infer", infer)):
        assert call(app, "POST", path, payload)[0] == 401
        assert call(app, "POST", path, payload, {"Authorization": "Bearer wrong"})[0] == 401
        assert call(app, "POST", path, payload, {"Authorization": "first"})[0] == 401  # the scheme is needed
        for key in ("first", "second"):
            status, answer = call(app, "POST", path, payload, {"Authorization": f"Bearer {key}"})
            assert status == 200, answer
    assert call(app, "GET", "/swagger.json")[0] == 401
    for path in ("/", "/v2/health/live", "/v2/health/ready", "/v2/models/iris/ready"):
        assert call(app, "GET", path)[0] == 200, path
    # Without keys (behind the appliance's router) nothing changes.
    assert call(Worker("iris", "1", model=OnnxModel(iris_onnx)), "POST", "/score", body)[0] == 200


SCRIPT = """\
import os
def init():
    pass
def run(mini_batch):
    if any("bad" in os.path.basename(f) for f in mini_batch):
        raise ValueError("a bad file")
    return [os.path.basename(f) for f in mini_batch]
"""


def test_shards_split_the_input_and_retries_skip_done_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "score.py").write_text(SCRIPT)
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    names = [f"f{i:02d}.csv" for i in range(11)]
    for i, name in enumerate(names):
        (data / ("sub" if i % 2 else "") / name).write_text("x\n")
    (data / ".hidden").write_text("x")
    monkeypatch.setenv("AML_APP_ROOT", str(tmp_path / "code"))
    monkeypatch.setenv("AZUREML_ENTRY_SCRIPT", "score.py")
    out = tmp_path / "out"
    for index in range(3):
        assert shard.main(["--input", str(data), "--output", str(out), "--index", str(index), "--shards", "3",
                           "--mini-batch-size", "2"]) == 0
    parts = sorted(p.name for p in (out / "parts").iterdir())
    assert parts == [f"{i:06d}.txt" for i in range(6)]  # 11 files, 6 mini-batches, each scored once
    scored = sorted(line for p in (out / "parts").iterdir() for line in p.read_text().split())
    assert scored == sorted(names)
    summaries = [json.loads((out / "shards" / f"{i}.json").read_text()) for i in range(3)]
    assert [s["mini_batches"] for s in summaries] == [2, 2, 2]
    assert sum(s["succeeded"] for s in summaries) == 11
    # A retried pod (same JOB_COMPLETION_INDEX) skips the parts that exist.
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "1")
    monkeypatch.setenv("APPLIANCE_SHARDS", "3")
    monkeypatch.setenv("AZUREML_BATCH_MINI_BATCH_SIZE", "2")
    assert shard.main(["--input", str(data), "--output", str(out)]) == 0
    assert json.loads((out / "shards" / "1.json").read_text())["skipped"] == 2
    # Failed items over the threshold fail the index (the Job retries it, backoffLimitPerIndex).
    (data / "bad.csv").write_text("x\n")
    monkeypatch.setenv("AZUREML_BATCH_ERROR_THRESHOLD", "0")
    codes = [shard.main(["--input", str(data), "--output", str(tmp_path / "out2"), "--index", str(i)])
             for i in range(3)]
    assert sorted(codes) == [0, 0, 1]
