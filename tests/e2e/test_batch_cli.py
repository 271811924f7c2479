"""Azure's batch scoring script (azureml-examples, cli/endpoints/batch/deploy-models/heart-classifier-mlflow/
deploy-and-run.sh), `az ml` replaced by `appliance`, against one real daemon; its output checked as the script
uses it. The model is a scoring script that counts lines, run in the daemon's own Python (no environment)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import APPLIANCE, Daemon

SCORE = '''import os
def init():
    print("init done")
def run(mini_batch):
    results = []
    for path in mini_batch:
        with open(path) as f:
            results.append(f"{os.path.basename(path)} {sum(1 for _ in f)}")
    return results
'''
FILES = {f"part-{i}.csv": "".join(f"{i},{j}\n" for j in range(i + 1)) for i in range(5)}  # 1 to 5 lines
EXPECTED = sorted(f"{name} {text.count(chr(10))}" for name, text in FILES.items())
PROGRESS = re.compile(r"^(Preparing|Running|Completed): \d+/\d+ mini-batches, \d+/\d+ items, \d+ failed, "
                      r"\d+ retries$")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """heart-classifier-mlflow's folder, with a line-counting script in place of the MLflow model."""
    root = tmp_path_factory.mktemp("batch")
    (root / "model").mkdir()
    (root / "model" / "weights.txt").write_text("not a real model\n")
    (root / "data").mkdir()
    for name, text in FILES.items():
        (root / "data" / name).write_text(text)
    (root / "code").mkdir()
    (root / "code" / "batch_driver.py").write_text(SCORE)
    (root / "code-broken").mkdir()
    (root / "code-broken" / "batch_driver.py").write_text("def init():\n    pass\n"
                                                          "def run(mini_batch):\n    raise RuntimeError('bad row')\n")
    (root / "heart-dataset-unlabeled.yml").write_text(
        "$schema: https://azuremlschemas.azureedge.net/latest/data.schema.json\n"
        "name: heart-dataset-unlabeled\ndescription: An unlabeled dataset.\ntype: uri_folder\npath: data\n")
    (root / "endpoint.yml").write_text(
        "$schema: https://azuremlschemas.azureedge.net/latest/batchEndpoint.schema.json\n"
        "name: heart-classifier-batch\ndescription: A classifier for batch inference\nauth_mode: aad_token\n")
    (root / "deployment-simple").mkdir()
    (root / "deployment-simple" / "deployment.yml").write_text(
        "$schema: https://azuremlschemas.azureedge.net/latest/modelBatchDeployment.schema.json\n"
        "endpoint_name: heart-classifier-batch\nname: classifier-lines\ntype: model\n"
        "model: azureml:heart-classifier-mlflow@latest\n"
        "code_configuration:\n  code: ../code\n  scoring_script: batch_driver.py\n"
        "compute: azureml:batch-cluster\nresources:\n  instance_count: 1\n"
        "settings:\n  max_concurrency_per_instance: 2\n  mini_batch_size: 2\n  output_action: append_row\n"
        "  output_file_name: predictions.csv\n  retry_settings:\n    max_retries: 3\n    timeout: 300\n"
        "  error_threshold: -1\n  logging_level: info\n")
    return root


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = Daemon(tmp_path_factory.mktemp("home") / "home").start()
    yield d
    if d.proc and d.proc.poll() is None:
        d.stop()


def az(daemon: Daemon, line: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """One command line as Azure's scripts write it, `az ml` → `appliance` (stdout piped: not a terminal)."""
    args = shlex.split(line.replace("az ml ", "", 1))
    result = subprocess.run([APPLIANCE, *args], env=daemon.env, cwd=cwd, capture_output=True, text=True, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"{line} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


# deploy-and-run.sh's lines in its order, with its quoting (only the model's type and compute are left out).
SETUP = """\
az ml model create --name $MODEL_NAME --type "custom_model" --path "model"
az ml data create -f heart-dataset-unlabeled.yml
az ml batch-endpoint create -n $ENDPOINT_NAME -f endpoint.yml
az ml batch-endpoint show --name $ENDPOINT_NAME
az ml batch-deployment create --file deployment-simple/deployment.yml --endpoint-name $ENDPOINT_NAME --set-default
az ml batch-endpoint update --name $ENDPOINT_NAME --set defaults.deployment_name=$DEPLOYMENT_NAME
az ml batch-deployment show --name $DEPLOYMENT_NAME --endpoint-name $ENDPOINT_NAME
"""


def script(text: str, endpoint: str) -> list[str]:
    return (text.replace("$MODEL_NAME", "heart-classifier-mlflow").replace("$ENDPOINT_NAME", endpoint)
            .replace("$DEPLOYMENT_NAME", "classifier-lines").splitlines())


def test_deploy_and_run_as_written(daemon: Daemon, project: Path) -> None:
    ep = "heart-classifier-batch"
    for line in script(SETUP, ep):
        result = az(daemon, line, project)
        if "batch-endpoint show" in line:
            assert ep in result.stdout
    assert az(daemon, f"az ml batch-endpoint show -n {ep} --query defaults.deployment_name -o tsv",
              project).stdout == "classifier-lines\n"
    assert az(daemon, f"az ml batch-endpoint show -n {ep} --query auth_mode -o tsv", project).stdout == "aad_token\n"
    shown = json.loads(az(daemon, f"az ml batch-deployment show -n classifier-lines -e {ep} -o json", project).stdout)
    assert shown["settings"]["mini_batch_size"] == 2 and shown["settings"]["max_concurrency_per_instance"] == 2

    job = az(daemon, f"az ml batch-endpoint invoke --name {ep} --input azureml:heart-dataset-unlabeled@latest "
                     "--query name -o tsv", project).stdout
    assert job.endswith("\n") and job.count("\n") == 1 and "\t" not in job
    job = job.strip()
    az(daemon, f"az ml job show -n {job} --web", project)
    listed = az(daemon, f"az ml batch-deployment list-jobs --name classifier-lines --endpoint-name {ep} "
                        "--query [].name", project)
    assert job in json.loads(listed.stdout)
    assert job in json.loads(az(daemon, f"az ml batch-endpoint list-jobs -n {ep} --query [].name", project).stdout)

    streamed = az(daemon, f"az ml job stream -n {job}", project)
    assert streamed.stdout.splitlines()[-1] == "Completed: 3/3 mini-batches, 5/5 items, 0 failed, 0 retries"
    assert az(daemon, f"az ml job show -n {job} --query status -o tsv", project).stdout == "Completed\n"

    az(daemon, f"az ml job download --name {job} --output-name score --download-path ./", project)
    predictions = project / "named-outputs" / "score" / "predictions.csv"
    assert sorted(predictions.read_text().splitlines()) == EXPECTED

    wrong = az(daemon, f"az ml job download --name {job} --output-name scores --download-path ./", project,
               check=False)
    assert wrong.returncode == 2 and "'score'" in wrong.stderr and "Traceback" not in wrong.stderr

    unconfirmed = subprocess.run([APPLIANCE, "batch-endpoint", "delete", "--name", ep], env=daemon.env,
                                 stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert unconfirmed.returncode == 2 and "--yes" in unconfirmed.stderr
    az(daemon, f"az ml batch-endpoint delete --name {ep} --yes", project)
    assert az(daemon, f"az ml batch-endpoint show -n {ep}", project, check=False).returncode == 1


def test_invoke_a_local_folder_and_stream(daemon: Daemon, project: Path) -> None:
    ep = "lines-ep"
    az(daemon, f"az ml batch-endpoint create -n {ep} -f endpoint.yml", project)
    az(daemon, f"az ml batch-deployment create -f deployment-simple/deployment.yml -e {ep} --set-default", project)
    listed = json.loads(az(daemon, f"az ml batch-deployment list -e {ep} -o json", project).stdout)
    assert [d["name"] for d in listed] == ["classifier-lines"]

    # piped: the job, then plain progress lines, exit 0 once Completed
    run = az(daemon, f"az ml batch-endpoint invoke -n {ep} --input data --output-path out "
                     "--set output_file_name=lines.csv --stream", project)
    progress = [line for line in run.stdout.splitlines() if PROGRESS.match(line)]
    assert progress and progress[-1] == "Completed: 3/3 mini-batches, 5/5 items, 0 failed, 0 retries"
    assert sorted((project / "out" / "lines.csv").read_text().splitlines()) == EXPECTED

    one = az(daemon, f"az ml batch-endpoint invoke -n {ep} --input data/part-2.csv --input-type uri_file "
                     "--mini-batch-size 1 --query name -o tsv", project).stdout.strip()
    assert az(daemon, f"az ml job stream -n {one}", project).stdout.splitlines()[-1] == \
        "Completed: 1/1 mini-batches, 1/1 items, 0 failed, 0 retries"
    jobs = json.loads(az(daemon, f"az ml job list -e {ep} -o json", project).stdout)
    assert jobs[0]["name"] == one and len(jobs) == 2  # newest first

    # a failing deployment: stream exits 1 with the job's error
    az(daemon, f"az ml batch-deployment create -f deployment-simple/deployment.yml -e {ep} -n broken "
               "--set code_configuration.code=code-broken settings.error_threshold=0 "
               "settings.retry_settings.max_retries=0", project)
    failed = az(daemon, f"az ml batch-endpoint invoke -n {ep} --deployment-name broken --input data --stream -o none",
                project, check=False)
    assert failed.returncode == 1 and "failed" in failed.stderr and "bad row" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert az(daemon, f"az ml batch-endpoint show -n {ep} --query defaults.deployment_name -o tsv",
              project).stdout == "classifier-lines\n"

    az(daemon, "az ml data create --name one-file --path data/part-0.csv --type uri_file", project)
    assert az(daemon, "az ml data show -n one-file --query type -o tsv", project).stdout == "uri_file\n"
    assert json.loads(az(daemon, "az ml data show -n one-file --query id", project).stdout) == "azureml:one-file:1"
    names = az(daemon, "az ml data list --query [].name -o tsv", project).stdout.split()
    assert "one-file" in names
    az(daemon, f"az ml batch-endpoint delete -n {ep} --yes", project)
