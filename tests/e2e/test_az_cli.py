"""Command lines from Azure's own scripts (azureml-examples, cli/deploy-*.sh), `az ml` replaced by
`appliance`, against one real daemon; their output checked as those scripts use it."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import APPLIANCE, Daemon

SCORE = '''import json, os
def init():
    print("init done")
def run(raw_data):
    return {"got": json.loads(raw_data), "mode": os.environ.get("MODE"), "code": os.path.basename(os.getcwd())}
'''


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("az")
    (root / "endpoints" / "online" / "code").mkdir(parents=True)
    (root / "endpoints" / "online" / "code" / "score.py").write_text(SCORE)
    (root / "code-custom").mkdir()
    (root / "code-custom" / "score.py").write_text(SCORE.replace('"got"', '"custom"'))
    (root / "endpoints" / "online" / "endpoint.yml").write_text(
        "$schema: https://azuremlschemas.azureedge.net/latest/managedOnlineEndpoint.schema.json\n"
        "name: my-endpoint\nauth_mode: key\n")
    for name in ("blue", "green"):
        (root / "endpoints" / "online" / f"{name}-deployment.yml").write_text(
            "$schema: https://azuremlschemas.azureedge.net/latest/managedOnlineDeployment.schema.json\n"
            f"name: {name}\nendpoint_name: my-endpoint\n"
            "code_configuration:\n  code: ./code/\n  scoring_script: score.py\n"
            "instance_type: Standard_DS3_v2\ninstance_count: 1\n")
    (root / "endpoints" / "online" / "sample-request.json").write_text('{"data": [[1, 2, 3]]}')
    (root / "model").mkdir()
    (root / "model" / "weights.bin").write_bytes(b"w")
    return root


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = Daemon(tmp_path_factory.mktemp("home") / "home").start()
    yield d
    if d.proc and d.proc.poll() is None:
        d.stop()


def az(daemon: Daemon, line: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """One command line as Azure's scripts write it, `az ml` → `appliance`."""
    args = shlex.split(line.replace("az ml ", "", 1))
    result = subprocess.run([APPLIANCE, *args], env=daemon.env, cwd=cwd, capture_output=True, text=True, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"{line} exited {result.returncode}:\n{result.stderr}")
    return result


def test_azure_script_lines(daemon: Daemon, project: Path) -> None:
    ep = "my-endpoint"
    az(daemon, f"az ml online-endpoint create --name {ep} -f endpoints/online/endpoint.yml", project)
    az(daemon, f"az ml online-deployment create --name blue --endpoint {ep} "
               "-f endpoints/online/blue-deployment.yml --all-traffic", project)
    assert az(daemon, f"az ml online-endpoint show -n {ep} --query provisioning_state -o tsv",
              project).stdout == "Succeeded\n"
    assert az(daemon, f'az ml online-deployment show --endpoint-name {ep} --name blue --query "provisioning_state" '
                      "-o tsv", project).stdout == "Succeeded\n"

    key = az(daemon, f"az ml online-endpoint get-credentials -n {ep} -o tsv --query primaryKey", project).stdout.strip()
    uri = az(daemon, f"az ml online-endpoint show -n {ep} -o tsv --query scoring_uri", project).stdout.strip()
    assert uri.startswith("http://") and uri.endswith(f":{daemon.port}/endpoints/{ep}/score")
    scored = httpx.post(uri, content=b'{"data": [[1]]}', headers={"Authorization": f"Bearer {key}",
                                                                  "Content-Type": "application/json"})
    assert scored.status_code == 200 and scored.json()["got"] == {"data": [[1]]}
    openapi = az(daemon, f"az ml online-endpoint show -n {ep} --query openapi_uri -o tsv", project).stdout.strip()
    assert openapi.endswith(f"/endpoints/{ep}/swagger.json")

    invoked = az(daemon, f"az ml online-endpoint invoke --name {ep} --request-file "
                         "endpoints/online/sample-request.json", project)
    assert json.loads(invoked.stdout)["got"] == {"data": [[1, 2, 3]]}

    # --set with a path: relative to the caller's directory (paths in the file: to the file's folder)
    az(daemon, f"az ml online-deployment create --name green --endpoint-name {ep} "
               "-f endpoints/online/green-deployment.yml --set code_configuration.code=code-custom "
               "environment_variables.MODE=on instance_count=1", project)
    green = daemon.score(ep, {"x": 1}, **{"azureml-model-deployment": "green"}).json()
    assert green["custom"] == {"x": 1} and green["mode"] == "on"  # `on` stays a string (YAML 1.2)

    az(daemon, f'az ml online-endpoint update --name {ep} --traffic "blue=90 green=10"', project)
    assert json.loads(az(daemon, f"az ml online-endpoint show -n {ep} --query traffic -o json", project).stdout) \
        == {"blue": 90, "green": 10}
    assert az(daemon, f"az ml online-endpoint show -n {ep} --query traffic -o tsv", project).stdout == "90\t10\n"

    logs = az(daemon, f"az ml online-deployment get-logs --name blue --endpoint {ep} --lines 50", project)
    assert "init done" in logs.stdout
    assert len(az(daemon, f"az ml online-deployment get-logs -n blue -e {ep} --lines 1", project)
               .stdout.splitlines()) == 1

    # a misspelt field on the command line: an error with a suggestion, nothing changed
    typo = az(daemon, f"az ml online-deployment update -n blue -e {ep} --set instance_cnt=2", project, check=False)
    assert typo.returncode != 0 and "did you mean 'instance_count'" in typo.stderr
    assert az(daemon, f"az ml online-deployment show -n blue -e {ep} --query instance_count -o tsv",
              project).stdout == "1\n"

    az(daemon, "az ml model create --name iris-model --version 1 --path model --type custom_model", project)
    shown = json.loads(az(daemon, "az ml model show -n iris-model --version 1 -o json", project).stdout)
    assert shown["type"] == "custom_model" and shown["id"] == "azureml:iris-model:1"
    az(daemon, "az ml model archive --name iris-model --version 1", project)
    assert az(daemon, "az ml model list --query [].name -o tsv", project).stdout == ""
    assert json.loads(az(daemon, "az ml model show -n iris-model -v 1 -o json", project).stdout)["archived"] is True

    env = az(daemon, "az ml environment create --name my-env --version 1 --image python:3.11-slim "
                     "--query name -o tsv", project)
    assert env.stdout == "my-env\n"

    missing = az(daemon, "az ml batch-endpoint create -n my-batch -f no-such.yml", project, check=False)
    assert missing.returncode != 0 and "no-such.yml" in missing.stderr

    az(daemon, "az ml online-endpoint create -n tok-endpoint --auth-mode aml_token", project)
    token = az(daemon, "az ml online-endpoint get-credentials -n tok-endpoint -o tsv --query accessToken", project)
    assert len(token.stdout.strip()) > 20

    # piped tables: a header, and never cut (the scoring URI is whole)
    table = az(daemon, "az ml online-endpoint list", project).stdout.splitlines()
    assert table[0].split()[:2] == ["NAME", "AUTH"] and uri in "\n".join(table)

    az(daemon, f"az ml online-endpoint delete --name {ep} --yes --no-wait", project)
    assert az(daemon, f"az ml online-endpoint show -n {ep}", project, check=False).returncode == 1


def test_home_and_url_work_for_every_command(daemon: Daemon, tmp_path: Path) -> None:
    bare = {k: v for k, v in os.environ.items() if k not in ("APPLIANCE_HOME", "APPLIANCE_URL")}
    for args in (["--home", str(daemon.home), "endpoint", "list", "-o", "json"],
                 ["endpoint", "list", "-o", "json", "--home", str(daemon.home)],
                 ["online-endpoint", "list", "--url", daemon.url, "--home", str(daemon.home), "-o", "json"]):
        result = subprocess.run([APPLIANCE, *args], env=bare, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert isinstance(json.loads(result.stdout), list)
    empty = tmp_path / "empty-home"
    nowhere = subprocess.run([APPLIANCE, "--home", str(empty), "endpoint", "list"], env=bare, capture_output=True,
                             text=True, timeout=60)
    assert nowhere.returncode == 3
    assert "http://127.0.0.1:8080" in nowhere.stderr and str(empty) in nowhere.stderr
    assert "--url" in nowhere.stderr and "appliance up" in nowhere.stderr


def test_markup_in_user_text_is_printed_as_is(daemon: Daemon, tmp_path: Path) -> None:
    result = subprocess.run([APPLIANCE, "online-endpoint", "show", "-n", "no-such-[/x]"], env=daemon.env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    bad = tmp_path / "bad.yml"
    bad.write_text("name: [standard\n")
    result = subprocess.run([APPLIANCE, "apply", "-f", str(bad)], env=daemon.env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr


# Lines copied from Azure's cli/deploy-safe-rollout-online-endpoints.sh and cli/deploy-local-endpoint.sh
# (azureml-examples), in their order, with their own quoting; only `az ml` and the files' folder differ
# (a trailing backslash joins a long line back into one).
SAFE_ROLLOUT = """\
az ml online-endpoint create --name $ENDPOINT_NAME -f endpoints/online/endpoint.yml
az ml online-deployment create --name blue --endpoint-name $ENDPOINT_NAME \
-f endpoints/online/blue-deployment.yml --all-traffic
az ml online-endpoint invoke --name $ENDPOINT_NAME --request-file endpoints/online/sample-request.json
az ml online-deployment update --name blue --endpoint-name $ENDPOINT_NAME --set instance_count=2
az ml online-deployment create --name green --endpoint-name $ENDPOINT_NAME -f endpoints/online/green-deployment.yml
az ml online-endpoint show -n $ENDPOINT_NAME --query traffic
az ml online-endpoint invoke --name $ENDPOINT_NAME --deployment-name green \
--request-file endpoints/online/sample-request.json
az ml online-endpoint update --name $ENDPOINT_NAME --mirror-traffic "green=10"
az ml online-endpoint update --name $ENDPOINT_NAME --mirror-traffic "green=0"
az ml online-endpoint update --name $ENDPOINT_NAME --traffic "blue=90 green=10"
az ml online-endpoint update --name $ENDPOINT_NAME --traffic "blue=0 green=100"
az ml online-deployment delete --name blue --endpoint $ENDPOINT_NAME --yes --no-wait
az ml online-endpoint delete --name $ENDPOINT_NAME --yes --no-wait
"""
LOCAL = """\
az ml online-endpoint create --local -n $ENDPOINT_NAME -f endpoints/online/endpoint.yml
az ml online-deployment create --local -n blue --endpoint $ENDPOINT_NAME -f endpoints/online/blue-deployment.yml
az ml online-endpoint show -n $ENDPOINT_NAME --local
az ml online-endpoint invoke --local --name $ENDPOINT_NAME --request-file endpoints/online/sample-request.json
az ml online-deployment get-logs --local -n blue --endpoint $ENDPOINT_NAME
az ml online-endpoint delete --local --name $ENDPOINT_NAME --yes
"""
STATUS = """\
az ml online-endpoint show --local --name $ENDPOINT_NAME --query "provisioning_state" -o tsv
az ml online-deployment show --local --name blue --endpoint $ENDPOINT_NAME --query "provisioning_state" -o tsv
az ml online-endpoint get-credentials -n $ENDPOINT_NAME -o tsv --query primaryKey
az ml online-endpoint show --local -n $ENDPOINT_NAME -o tsv --query scoring_uri
"""


def test_azure_scripts_run_as_written(daemon: Daemon, project: Path) -> None:
    for script in (SAFE_ROLLOUT, LOCAL):
        lines = script.replace("$ENDPOINT_NAME", "rollout-ep").splitlines()
        for line in lines:
            result = az(daemon, line, project)
            if "invoke" in line:
                assert json.loads(result.stdout)["got"] == {"data": [[1, 2, 3]]}
            if "--query traffic" in line:
                traffic = json.loads(result.stdout)  # JSON without -o, as from az
                assert traffic["blue"] == 100 and traffic.get("green", 0) == 0
            if "get-logs" in line:
                assert "init done" in result.stdout
            if "update --name blue" in line:  # instance_count=2, as the script checks next
                shown = json.loads(az(daemon, "az ml online-deployment show -n blue -e rollout-ep -o json",
                                      project).stdout)
                assert shown["instance_count"] == 2 and shown["provisioning_state"] == "Succeeded"
            if script is LOCAL and "show -n" in line:
                status, deployment, key, uri = (az(daemon, s, project).stdout.strip() for s in
                                                STATUS.replace("$ENDPOINT_NAME", "rollout-ep").splitlines())
                assert (status, deployment) == ("Succeeded", "Succeeded")
                scored = httpx.post(uri, content=b'{"data": [[7]]}', headers={"Authorization": f"Bearer {key}"})
                assert scored.status_code == 200 and scored.json()["got"] == {"data": [[7]]}
        assert az(daemon, "az ml online-endpoint show -n rollout-ep", project, check=False).returncode == 1
