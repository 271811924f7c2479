"""`appliance export` against a real daemon: the exported Deployment's container run with Docker exactly as
the manifest says (command, args, env, user, read-only root, tmpfs, port, the key from a Secret-shaped
folder), pushed to a local registry and pinned by digest; the placeholder path; byte-identical output;
and the Azure ML YAML round trip into a fresh home."""

from __future__ import annotations

import filecmp
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
import yaml
from conftest import Daemon, free_port, wait_until

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.2, 3.4, 5.4, 2.3]]
KUBECTL = "/usr/bin/kubectl"


def docker_project(project: Path) -> Path:
    (project / "conda.yml").write_text("dependencies:\n  - pip:\n    - six==1.16.0\n")
    (project / "env.yml").write_text("name: iris-env\nimage: python:3.11-slim\nconda_file: conda.yml\n")
    (project / "blue.yml").write_text(project.joinpath("blue.yml").read_text()
                                      + "environment: azureml:iris-env:1\nenvironment_variables:\n  GREETING: hi\n")
    return project


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    """A real registry (Debian's docker-registry) on a loopback port, for `export --push`."""
    if shutil.which("docker-registry") is None:
        pytest.skip("no docker-registry here: the placeholder path is tested instead")
    port = free_port()
    config = tmp_path / "registry.yml"
    config.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path / 'registry'}\n"
                      f"http:\n  addr: 127.0.0.1:{port}\n")
    proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)

    def up() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    wait_until(up, 20, "the registry")
    yield f"127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


def built(folder: Path) -> list[dict[str, Any]]:
    result = subprocess.run([KUBECTL, "kustomize", str(folder)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def _status(url: str, **kwargs: Any) -> int:
    try:
        return httpx.get(url, timeout=2, **kwargs).status_code
    except httpx.TransportError:
        return 0


def test_exported_container_runs_as_the_manifest_says(docker_daemon: Daemon, iris_project: Path, registry: str,
                                                       tmp_path: Path) -> None:
    daemon = docker_daemon
    project = docker_project(iris_project)
    daemon.cli("apply", "-f", "endpoint.yml", "-f", "env.yml", "-f", "blue.yml", cwd=project)
    out = tmp_path / "deploy"
    started = time.monotonic()
    done = daemon.cli("export", "my-ep", "--target", "gateway", "--out", str(out), "--registry", f"{registry}/team",
                      "--push", "--namespace", "ml")
    elapsed = time.monotonic() - started
    print(f"export with package + push: {elapsed:.2f}s")
    assert "not pushed" not in done.stderr
    docs = built(out / "overlays" / "prod")
    deployment = one(docs, "Deployment", "my-ep-blue")
    assert deployment["metadata"]["namespace"] == "ml"
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"].startswith(f"{registry}/team/my-ep-blue@sha256:")
    config = one(docs, "ConfigMap", "my-ep-blue-env")["data"]
    assert config == {"GREETING": "hi"}

    # The Secret, as `kubectl create secret generic my-ep-keys --from-literal=primaryKey=...` mounts it.
    keys = daemon.api("POST", "/endpoints/my-ep/credentials").json()
    secret = tmp_path / "secret"
    secret.mkdir()
    for name in ("primaryKey", "secondaryKey"):
        (secret / name).write_text(keys[name])
        (secret / name).chmod(0o444)
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["endpoint-keys"]["secret"]["secretName"] == "my-ep-keys"
    mounts: dict[str, Any] = {}
    tmpfs: dict[str, str] = {}
    for mount in container["volumeMounts"]:
        volume = volumes[mount["name"]]
        if "emptyDir" in volume:
            tmpfs[mount["mountPath"]] = "rw,size=64m"
        else:
            mounts[str(secret)] = {"bind": mount["mountPath"], "mode": "ro"}
    env = {e["name"]: e["value"] for e in container["env"]} | config
    security = pod["securityContext"]
    port = free_port()
    (http,) = container["ports"]
    engine = docker.from_env()
    running = engine.containers.run(
        container["image"], entrypoint=container["command"][:1], command=container["command"][1:] + container["args"],
        environment=env, user=f"{security['runAsUser']}:{security['runAsGroup']}",
        read_only=container["securityContext"]["readOnlyRootFilesystem"], tmpfs=tmpfs, volumes=mounts,
        cap_drop=["ALL"], security_opt=["no-new-privileges"],
        ports={f"{http['containerPort']}/tcp": ("127.0.0.1", port)}, detach=True)
    try:
        url = f"http://127.0.0.1:{port}"
        ready = container["readinessProbe"]["httpGet"]["path"]
        wait_until(lambda: _status(url + ready) == 200, 90, "the exported container's readiness path")
        assert httpx.post(url + "/score", json={"data": ROWS}).status_code == 401
        for name in ("primaryKey", "secondaryKey"):
            answer = httpx.post(url + "/score", json={"data": ROWS},
                                headers={"authorization": f"Bearer {keys[name]}"})
            assert answer.status_code == 200 and answer.json()["label"] == [0, 2]
        assert httpx.post(url + "/score", json={"data": ROWS}, headers={"authorization": "Bearer nope"}
                          ).status_code == 401
        running.reload()
        assert running.attrs["Config"]["User"] == "10001:10001" and running.attrs["HostConfig"]["ReadonlyRootfs"]
    finally:
        running.remove(force=True)


def test_placeholder_when_not_pushed_and_byte_identical(docker_daemon: Daemon, iris_project: Path,
                                                        tmp_path: Path) -> None:
    daemon = docker_daemon
    project = docker_project(iris_project)
    daemon.cli("apply", "-f", "endpoint.yml", "-f", "env.yml", "-f", "blue.yml", cwd=project)
    first, second = tmp_path / "one", tmp_path / "two"
    started = time.monotonic()
    done = daemon.cli("export", "my-ep", "--target", "istio", "--out", str(first))
    print(f"export (package cached, no push): {time.monotonic() - started:.2f}s")
    assert "not pushed" in done.stderr and "registry.invalid" in done.stderr
    daemon.cli("export", "my-ep", "--target", "istio", "--out", str(second))
    compared = filecmp.dircmp(first, second)
    assert not compared.diff_files and not compared.left_only and not compared.right_only
    for path in first.rglob("*"):
        if path.is_file():
            assert path.read_bytes() == (second / path.relative_to(first)).read_bytes(), path
    prod = yaml.safe_load((first / "overlays" / "prod" / "kustomization.yaml").read_text())
    (image,) = prod["images"]
    assert image["newName"] == "registry.invalid/appliance/my-ep-blue" and image["digest"].startswith("sha256:")
    assert "placeholder" in (first / "README.md").read_text()
    # A folder with files in it is refused, unless --force.
    refused = daemon.cli("export", "my-ep", "--out", str(first), check=False)
    assert refused.returncode != 0 and "not empty" in refused.stderr
    assert daemon.cli("export", "my-ep", "--target", "kserve", "--out", str(first), "--force").returncode == 0
    kserve = built(first / "overlays" / "dev")
    assert one(kserve, "InferenceService", "my-ep")["metadata"]["annotations"][
        "serving.kserve.io/deploymentMode"] == "Standard"
    missing = daemon.cli("export", "nope-ep", "--out", str(tmp_path / "x"), check=False)
    assert missing.returncode != 0 and "nope-ep" in missing.stderr


def _state(d: Daemon) -> dict[str, Any]:
    models = sorted((m["name"], m["version"], m.get("digest") or m.get("content_digest")) for m in
                    d.api("GET", "/models").json())
    endpoint = d.api("GET", "/endpoints/my-ep").json()
    deployments = {}
    for dep in d.api("GET", "/endpoints/my-ep/deployments").json():
        deployments[dep["name"]] = {k: dep.get(k) for k in ("model", "instance_type", "instance_count",
                                                            "environment_variables", "environment")}
    return {"models": models, "traffic": endpoint.get("traffic"), "mirror": endpoint.get("mirror_traffic"),
            "auth_mode": endpoint.get("auth_mode"), "deployments": deployments}


def test_azure_round_trip(daemon: Daemon, iris_project: Path, tmp_path: Path) -> None:
    project = iris_project
    (project / "green.yml").write_text(
        "name: green\nendpoint_name: my-ep\nmodel:\n  name: iris\n  version: 2\n  path: ./model/\n"
        "instance_type: Standard_F4s_v2\ninstance_count: 2\nenvironment_variables:\n  MODE: green\n")
    daemon.cli("apply", "-f", "endpoint.yml", "-f", "blue.yml", "-f", "green.yml", cwd=project)
    daemon.cli("online-endpoint", "update", "-n", "my-ep", "--traffic", "blue=100 green=0",
               "--mirror-traffic", "green=20")
    out = tmp_path / "azure"
    started = time.monotonic()
    daemon.cli("export", "my-ep", "--format", "azure", "--out", str(out))
    print(f"export --format azure: {time.monotonic() - started:.2f}s")
    again = tmp_path / "azure2"
    daemon.cli("export", "my-ep", "--format", "azure", "--out", str(again))
    for path in out.rglob("*"):
        if path.is_file():
            assert path.read_bytes() == (again / path.relative_to(out)).read_bytes(), path
    readme = (out / "README.md").read_text()
    apply_line = next(line for line in readme.splitlines() if line.startswith("appliance apply "))
    fresh = Daemon(tmp_path / "fresh-home").start()
    try:
        fresh.cli(*apply_line.split()[1:], cwd=out)
        before, after = _state(daemon), _state(fresh)
        assert after == before, json.dumps({"before": before, "after": after}, indent=1)
        assert before["mirror"] == {"green": 20} and before["traffic"]["blue"] == 100
        assert fresh.score("my-ep", {"data": ROWS}).json()["label"] == [0, 2]
    finally:
        fresh.stop()
