"""Per endpoint, `--target gateway`: a Gateway API HTTPRoute (gateway.networking.k8s.io/v1, v1.3+ for
RequestMirror's `percent`)."""

from __future__ import annotations

from typing import Any

from appliance.export import common
from appliance.export.inputs import OnlineEndpointExport, Options
from appliance.export.workloads import names

PIN_HEADER = "azureml-model-deployment"


def live(export: OnlineEndpointExport) -> list[tuple[str, int]]:
    """(deployment, percent) with live traffic, in a fixed order."""
    known = {u.spec.name for u in export.deployments}
    return sorted((k, v) for k, v in export.spec.traffic.items() if v > 0 and k in known)


def mirror(export: OnlineEndpointExport) -> tuple[str, int] | None:
    known = {u.spec.name for u in export.deployments}
    found = sorted((k, v) for k, v in export.spec.mirror_traffic.items() if v > 0 and k in known)
    return found[0] if found else None


def service_of(export: OnlineEndpointExport, deployment: str) -> str:
    return common.k8s_name(export.spec.name, deployment)


def http_route(export: OnlineEndpointExport, options: Options) -> dict[str, Any]:
    ep = export.spec.name
    rules: list[dict[str, Any]] = []
    # A header match is more specific than the catch-all, so it wins whatever the order (GEP: the rule with
    # the most header matches); pinned requests are never mirrored, as on Azure.
    for unit in sorted(export.deployments, key=lambda u: u.spec.name):
        rules.append({"matches": [{"path": {"type": "PathPrefix", "value": "/"},
                                   "headers": [{"type": "Exact", "name": PIN_HEADER, "value": unit.spec.name}]}],
                      "backendRefs": [{"name": names(ep, unit), "port": 80}]})
    weighted = live(export)
    if weighted:
        rule: dict[str, Any] = {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}]}
        if (mirrored := mirror(export)) is not None:
            rule["filters"] = [{"type": "RequestMirror", "requestMirror": {
                "backendRef": {"name": service_of(export, mirrored[0]), "port": 80}, "percent": mirrored[1]}}]
        rule["backendRefs"] = [{"name": service_of(export, d), "port": 80, "weight": w} for d, w in weighted]
        rules.append(rule)
    labels = common.labels(ep, None, None, "routing")
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": common.metadata(common.k8s_name(ep), labels),
            "spec": {"parentRefs": [{"name": options.gateway}], "rules": rules}}
