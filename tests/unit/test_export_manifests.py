"""`appliance export` rendering (pure): every object valid (core kinds with kubernetes-validate strict for
1.33, CRDs against the official CRD schemas made strict), kustomize overlays build offline, the workload
settings platform teams expect, the traffic parsed back equals the endpoint's, byte-identical output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from export_fixtures import documents, kustomize, sample, validate, write

from appliance.export import Options, render
from appliance.export.gateway import PIN_HEADER

TARGETS = ("gateway", "istio", "kserve")


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, (kind, name, [d["metadata"]["name"] for d in by_kind(docs, kind)])
    return found[0]


@pytest.mark.parametrize("target", TARGETS)
def test_every_object_validates(target: str) -> None:
    files, _ = render(*sample(), Options(target=target))
    docs = documents(files)
    kinds = {d["kind"] for d in docs}
    expected = {"gateway": "HTTPRoute", "istio": "VirtualService", "kserve": "InferenceService"}[target]
    assert expected in kinds and "Job" in kinds and "CronJob" in kinds and "ServiceAccount" in kinds
    if target != "kserve":
        assert {"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "ConfigMap"} <= kinds
    for doc in docs:
        validate(doc)
        assert doc["kind"] == "Kustomization" or "namespace" not in doc["metadata"]  # the base has no namespace


def test_validators_refuse_what_they_should() -> None:
    """The oracle is strict: an unknown field in a CRD object, or in a core object, is an error."""
    files, _ = render(*sample(), Options(target="gateway"))
    route = by_kind(documents(files), "HTTPRoute")[0]
    route["spec"]["rules"][0]["weightt"] = 1
    with pytest.raises(AssertionError, match="weightt"):
        validate(route)
    deployment = by_kind(documents(files), "Deployment")[0]
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(Exception, match="imagePullPolicyy"):
        validate(deployment)


@pytest.mark.parametrize("target", TARGETS)
def test_overlays_build_offline_and_validate(target: str, tmp_path: Path) -> None:
    files, _ = render(*sample(), Options(target=target, namespace="ml-prod"))
    root = write(files, tmp_path)
    for env, namespace, replicas in (("dev", "ml-prod-dev", 1), ("prod", "ml-prod", 3)):
        built = kustomize(root / "overlays" / env)
        for doc in built:
            validate(doc)
            assert doc["metadata"].get("namespace", namespace) == namespace or doc["kind"] == "Namespace"
            assert doc["metadata"]["labels"]["environment"] == env
        assert one(built, "Namespace", namespace)
        images = [c["image"] for d in built for c in _containers(d)]
        assert images and all("@sha256:" in i for i in images), images  # every image pinned by digest
        if target != "kserve":
            assert one(built, "Deployment", "my-ep-blue")["spec"]["replicas"] == replicas
            pod = one(built, "Deployment", "my-ep-blue")["spec"]["template"]
            assert pod["metadata"]["labels"]["environment"] == env  # labels reach the pod template
            assert "environment" not in one(built, "Deployment", "my-ep-blue")["spec"]["selector"]["matchLabels"]


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "containers" and isinstance(value, list):
                    found.extend(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    return found


def test_deployment_is_what_platform_engineers_expect() -> None:
    files, _ = render(*sample(), Options(target="gateway"))
    docs = documents(files)
    blue = one(docs, "Deployment", "my-ep-blue")
    labels = blue["metadata"]["labels"]
    assert {k.split("/")[1] for k in labels} == {"name", "instance", "version", "component", "part-of"}
    assert blue["spec"]["replicas"] == 3
    pod = blue["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    (worker,) = pod["containers"]
    assert worker["securityContext"]["readOnlyRootFilesystem"] is True
    assert worker["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert {m["mountPath"] for m in worker["volumeMounts"]} >= {"/tmp", "/dev/shm"}
    assert worker["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert worker["resources"] == {"requests": {"cpu": "4", "memory": "12Gi"}, "limits": {"memory": "12Gi"}}
    assert worker["readinessProbe"]["httpGet"] == {"path": "/", "port": "http"}
    assert (worker["readinessProbe"]["initialDelaySeconds"], worker["readinessProbe"]["periodSeconds"],
            worker["readinessProbe"]["failureThreshold"]) == (5, 3, 4)
    assert worker["startupProbe"]["failureThreshold"] * worker["startupProbe"]["periodSeconds"] >= 5 + 4 * 3
    assert worker["livenessProbe"]["failureThreshold"] == 30
    assert worker["envFrom"] == [{"configMapRef": {"name": "my-ep-blue-env"}}]
    assert one(docs, "ConfigMap", "my-ep-blue-env")["data"] == {"B": "2", "LOG_LEVEL": "debug"}
    # The key comes from a Secret reference; no literal key anywhere.
    keys = next(v for v in pod["volumes"] if v["name"] == "endpoint-keys")
    assert keys["secret"]["secretName"] == "my-ep-keys"
    assert not by_kind(docs, "Secret")
    assert one(docs, "ServiceAccount", "my-ep-blue")["automountServiceAccountToken"] is False
    hpa = one(docs, "HorizontalPodAutoscaler", "my-ep-blue")["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 6)
    assert hpa["metrics"][0]["resource"]["target"]["averageUtilization"] == 60
    assert hpa["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300
    assert one(docs, "PodDisruptionBudget", "my-ep-blue")["spec"]["maxUnavailable"] == 1
    assert blue["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 1


def test_gpu_deployment() -> None:
    files, _ = render(*sample(), Options(target="gateway"))
    green = one(documents(files), "Deployment", "my-ep-green")
    pod = green["spec"]["template"]["spec"]
    res = pod["containers"][0]["resources"]
    assert res["limits"]["nvidia.com/gpu"] == 1 and res["requests"]["nvidia.com/gpu"] == 1
    assert res["requests"]["cpu"] == "6"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert green["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}


def test_batch_indexed_job_and_cron_job() -> None:
    files, _ = render(*sample(), Options(target="gateway"))
    docs = documents(files)
    job = one(docs, "Job", "my-batch-nightly")["spec"]
    assert job["completionMode"] == "Indexed" and job["completions"] == 6 and job["parallelism"] == 6
    assert job["backoffLimitPerIndex"] == 4 and job["ttlSecondsAfterFinished"] > 0
    pod = job["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (shard,) = pod["containers"]
    assert shard["command"][-2:] == ["-m", "appliance.scoring.shard"]
    env = {e["name"]: e["value"] for e in shard["env"]}
    assert env["APPLIANCE_SHARDS"] == "6" and env["AZUREML_BATCH_MINI_BATCH_SIZE"] == "5"
    cron = one(docs, "CronJob", "my-batch-nightly")["spec"]
    assert cron["concurrencyPolicy"] == "Forbid" and cron["timeZone"] and cron["suspend"] is True
    assert cron["jobTemplate"]["spec"]["completionMode"] == "Indexed"


def traffic_of(docs: list[dict[str, Any]], target: str) -> tuple[dict[str, int], dict[str, int], dict[str, str]]:
    """(live weights, mirror percent, header value → service) parsed back from the manifests."""
    if target == "gateway":
        (route,) = by_kind(docs, "HTTPRoute")
        live: dict[str, int] = {}
        mirror: dict[str, int] = {}
        pins: dict[str, str] = {}
        for rule in route["spec"]["rules"]:
            headers = [h for m in rule["matches"] for h in m.get("headers", [])]
            if headers:
                assert [h["name"] for h in headers] == [PIN_HEADER] and not rule.get("filters")
                pins[headers[0]["value"]] = rule["backendRefs"][0]["name"]
            else:
                live.update({b["name"]: b["weight"] for b in rule["backendRefs"]})
                for f in rule.get("filters", []):
                    assert f["type"] == "RequestMirror"
                    mirror[f["requestMirror"]["backendRef"]["name"]] = f["requestMirror"]["percent"]
        return live, mirror, pins
    if target == "istio":
        (vs,) = by_kind(docs, "VirtualService")
        live, mirror, pins = {}, {}, {}
        rules = vs["spec"]["http"]
        seen_catch_all = False
        for rule in rules:
            if rule.get("match"):
                assert not seen_catch_all  # first match wins: the pins come before the weighted rule
                ((header, value),) = rule["match"][0]["headers"].items()
                assert header == PIN_HEADER
                pins[value["exact"]] = rule["route"][0]["destination"]["host"]
            else:
                seen_catch_all = True
                live.update({r["destination"]["host"]: r["weight"] for r in rule["route"]})
                if "mirror" in rule:
                    mirror[rule["mirror"]["host"]] = int(rule["mirrorPercentage"]["value"])
        return live, mirror, pins
    (isvc,) = by_kind(docs, "InferenceService")
    canaries = isvc["spec"].get("canary", [])
    names = [c["predictor"]["serviceAccountName"] for c in canaries]
    weights = {n: c["trafficPercent"] for n, c in zip(names, canaries, strict=True)}
    weights[isvc["spec"]["predictor"]["serviceAccountName"]] = 100 - sum(weights.values())
    return {k: v for k, v in weights.items() if v > 0}, {}, {}


CASES = [({"blue": 90, "green": 10, "red": 0}, {"red": 20}), ({"blue": 100}, {}),
         ({"blue": 30, "green": 30, "red": 40}, {}), ({"blue": 50, "green": 50, "red": 0}, {"red": 50})]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize(("traffic", "mirror"), CASES)
def test_traffic_parsed_back_equals_the_endpoints(target: str, traffic: dict[str, int], mirror: dict[str, int],
                                                  tmp_path: Path) -> None:
    online, batches = sample(traffic, mirror)
    files, warnings = render(online, batches, Options(target=target))
    docs = kustomize(write(files, tmp_path) / "overlays" / "prod")  # what reaches the cluster
    live, mirrored, pins = traffic_of(docs, target)
    service = {"blue": "my-ep-blue", "green": "my-ep-green", "red": "my-ep-red"}
    assert live == {service[k]: v for k, v in traffic.items() if v > 0}
    if target == "kserve":  # what KServe can't express is said, in the file and as a warning
        text = files["base/my-ep/inferenceservice.yaml"]
        assert "NOT EXPRESSED: the azureml-model-deployment header pin" in text
        assert any("header pin" in w for w in warnings)
        if mirror:
            assert "NOT EXPRESSED: mirror traffic red=" in text and any("can't mirror" in w for w in warnings)
    else:
        assert mirrored == {service[k]: v for k, v in mirror.items() if v > 0}
        assert pins == {name: service[name] for name in service}


def test_output_is_deterministic() -> None:
    first, _ = render(*sample(), Options(target="istio"))
    online, batches = sample()
    # The same state built in another order renders the same bytes.
    reordered = [type(online[0])(spec=online[0].spec, deployments=tuple(reversed(online[0].deployments)))]
    second, _ = render(reordered, batches, Options(target="istio"))
    assert first == second
    assert list(first) == sorted(first)


def test_readme_says_how_to_create_the_secret_apply_and_what_each_target_needs() -> None:
    for target, needs in (("gateway", "Gateway API v1.3"), ("istio", "Istio"), ("kserve", "KServe v0.20")):
        files, _ = render(*sample(), Options(target=target))
        text = files["README.md"]
        assert "kubectl -n appliance create secret generic my-ep-keys" in text
        assert "get-credentials -n My-Ep --query primaryKey -o tsv" in text
        assert "kubectl apply -k overlays/prod" in text and needs in text
        assert "placeholder" in text  # red's image is not pushed


def test_unpinned_image_warns_and_names_its_placeholder() -> None:
    online, batches = sample()
    files, warnings = render(online, batches, Options())
    assert any("my-ep-red" in w and "not pushed" in w for w in warnings)
    images = {i["name"]: i for i in yaml.safe_load(files["overlays/prod/kustomization.yaml"])["images"]}
    assert images["appliance/my-ep-red"]["digest"] == "sha256:" + "cd" * 32
