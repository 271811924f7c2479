"""The job runner in process (a real registry file, real worker processes): what a crash leaves in the
ledger is run again, and the output holds every item exactly once."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from appliance.batch.runner import JobRunner, Launch
from appliance.registry import MiniBatch, Registry
from appliance.specs import BatchDeploymentSpec, BatchSettings, CodeConfiguration

SCRIPT = "import os\ndef init(): pass\ndef run(b): return [os.path.basename(p) for p in b]\n"


def make_job(registry: Registry, tmp_path: Path, names: list[str]) -> tuple[Launch, str]:
    code = tmp_path / "code"
    code.mkdir()
    (code / "score.py").write_text(SCRIPT)
    data = tmp_path / "data"
    data.mkdir()
    files = []
    for name in names:
        (data / name).write_text("x\n")
        files.append(str(data / name))
    spec = BatchDeploymentSpec(name="main", endpoint_name="ep1", settings=BatchSettings(mini_batch_size=1),
                               code_configuration=CodeConfiguration(code=str(code), scoring_script="score.py"))
    job = registry.add_job(name="batchjob-1", spec=spec, code_digest=None, input={"path": str(data)},
                           output_dir=str(tmp_path / "out"), mini_batches=[[f] for f in files])
    env = {**os.environ, "AML_APP_ROOT": str(code), "AZUREML_ENTRY_SCRIPT": "score.py",
           "AZUREML_BI_OUTPUT_PATH": str(tmp_path / "out")}
    return Launch(python=sys.executable, env=env), job.name


def test_a_crash_between_part_and_ledger_is_run_again_exactly_once(registry: Registry, tmp_path: Path) -> None:
    launch, name = make_job(registry, tmp_path, ["a.csv", "b.csv", "c.csv", "d.csv"])
    parts = tmp_path / "job" / "parts"
    parts.mkdir(parents=True)
    # What a killed daemon leaves: mini-batch 0 recorded done (its part written); 1 running, its part
    # already written (the worker answered, the ledger had not been told); 2 and 3 pending.
    (parts / "000000.txt").write_text("a.csv\n")
    (parts / "000001.txt").write_text("b.csv\n")
    registry.record_mini_batches(name, [MiniBatch(idx=0, files=[], status="done", attempts=1, succeeded=1),
                                        MiniBatch(idx=1, files=[], status="running", attempts=1)])
    runner = JobRunner(registry, registry.get_job(name), tmp_path / "job", launch)
    assert asyncio.run(runner.run()) == "Completed"
    assert (tmp_path / "out" / "predictions.csv").read_text() == "a.csv\nb.csv\nc.csv\nd.csv\n"
    ledger = registry.mini_batches(name)
    assert [(b.status, b.attempts) for b in ledger] == [("done", 1), ("done", 2), ("done", 1), ("done", 1)]
    assert registry.get_job(name).status == "Completed"
    assert not parts.exists()  # merged, then removed


def test_a_worker_that_cannot_start_fails_the_job_with_why(registry: Registry, tmp_path: Path) -> None:
    launch, name = make_job(registry, tmp_path, ["a.csv", "b.csv"])
    (Path(launch.env["AML_APP_ROOT"]) / "score.py").write_text("def init():\n    raise RuntimeError('no model')\n"
                                                                "def run(b): return b\n")
    runner = JobRunner(registry, registry.get_job(name), tmp_path / "job", launch)
    assert asyncio.run(runner.run()) == "Failed"
    job = registry.get_job(name)
    assert "a worker could not start" in (job.error or "") and "no model" in (job.error or "")
    assert not (tmp_path / "out" / "predictions.csv").exists()
