"""Every example runs exactly as its README says (the fenced bash block under "## Run")."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import onnxruntime as ort
from conftest import ROOT, Daemon

EXAMPLES = ROOT / "examples"


def run_block(readme: Path) -> str:
    match = re.search(r"## Run\n.*?```bash\n(.*?)```", readme.read_text(), re.S)
    assert match, f"{readme} has no bash block under '## Run'"
    return match.group(1)


def test_iris_onnx_readme(daemon: Daemon, tmp_path: Path) -> None:
    example = EXAMPLES / "iris-onnx"
    script = run_block(example / "README.md").replace("localhost:8080", f"localhost:{daemon.port}")
    env = {**daemon.env, "PATH": f"{Path(ROOT / '.venv' / 'bin')}:{daemon.env['PATH']}"}
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=example, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    # Two scoring calls (invoke and curl), each with the labels the README promises.
    assert result.stdout.count('"label":[0,2]') == 2, result.stdout
    assert "Succeeded" in result.stdout and "CPUExecutionProvider" in result.stdout


def test_iris_model_script_makes_the_shipped_model_shape(tmp_path: Path) -> None:
    out = tmp_path / "model.onnx"
    subprocess.run([sys.executable, str(EXAMPLES / "iris-onnx" / "make_model.py"), str(out)], check=True,
                   capture_output=True)
    made, shipped = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
                     for p in (out, EXAMPLES / "iris-onnx" / "model" / "model.onnx"))
    for a, b in ((made.get_inputs(), shipped.get_inputs()), (made.get_outputs(), shipped.get_outputs())):
        assert [(x.name, x.type, x.shape) for x in a] == [(x.name, x.type, x.shape) for x in b]
