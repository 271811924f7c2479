"""Every example runs exactly as its README says (the fenced bash block under "## Run")."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import onnxruntime as ort
from conftest import ROOT, Daemon, served_provider

EXAMPLES = ROOT / "examples"


def run_readme(example: Path, daemon: Daemon) -> subprocess.CompletedProcess[str]:
    match = re.search(r"## Run\n.*?```bash\n(.*?)```", (example / "README.md").read_text(), re.S)
    assert match, f"{example}/README.md has no bash block under '## Run'"
    script = match.group(1).replace("localhost:8080", f"localhost:{daemon.port}")
    env = {**daemon.env, "PATH": f"{Path(sys.executable).parent}:{daemon.env['PATH']}"}
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=example, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return result


def test_iris_onnx_readme(daemon: Daemon) -> None:
    result = run_readme(EXAMPLES / "iris-onnx", daemon)
    # Two scoring calls (invoke and curl), each with the labels the README promises.
    assert result.stdout.count('"label":[0,2]') == 2, result.stdout
    assert "Succeeded" in result.stdout and served_provider() in result.stdout


def test_sklearn_score_readme(daemon: Daemon) -> None:
    example = EXAMPLES / "sklearn-score"
    result = run_readme(example, daemon)
    predictions = json.loads(result.stdout.splitlines()[0])
    rows = json.loads((example / "sample-request.json").read_text())["data"]
    expected = joblib.load(example / "model" / "model.pkl").predict(np.array(rows))
    assert np.allclose(predictions, expected)
    assert "Init complete" in result.stdout or "Request processed" in result.stdout  # the worker's log lines
    envs = [p for p in (daemon.home / "envs").iterdir() if not p.name.startswith(".")]
    assert len(envs) == 1 and (envs[0] / ".ready").exists()


def test_example_models_are_what_their_scripts_make(tmp_path: Path) -> None:
    out = tmp_path / "model.onnx"
    subprocess.run([sys.executable, str(EXAMPLES / "iris-onnx" / "make_model.py"), str(out)], check=True,
                   capture_output=True)
    made, shipped = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
                     for p in (out, EXAMPLES / "iris-onnx" / "model" / "model.onnx"))
    for a, b in ((made.get_inputs(), shipped.get_inputs()), (made.get_outputs(), shipped.get_outputs())):
        assert [(x.name, x.type, x.shape) for x in a] == [(x.name, x.type, x.shape) for x in b]
    pkl = tmp_path / "model.pkl"
    subprocess.run([sys.executable, str(EXAMPLES / "sklearn-score" / "make_model.py"), str(pkl)], check=True,
                   capture_output=True)
    rows = np.eye(10)
    assert np.allclose(joblib.load(pkl).predict(rows),
                       joblib.load(EXAMPLES / "sklearn-score" / "model" / "model.pkl").predict(rows))
