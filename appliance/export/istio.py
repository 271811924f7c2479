"""Per endpoint, `--target istio`: an Istio VirtualService (networking.istio.io/v1) and the endpoint's
Service it is the host of (the deployments' own Services are its destinations)."""

from __future__ import annotations

from typing import Any

from appliance.export import common
from appliance.export.gateway import PIN_HEADER, live, mirror, service_of
from appliance.export.inputs import OnlineEndpointExport, Options


def host_service(export: OnlineEndpointExport) -> dict[str, Any]:
    """`<endpoint>`: the name clients call inside the mesh; the VirtualService decides which pods answer."""
    ep = export.spec.name
    labels = common.labels(ep, None, None, "routing")
    return {"apiVersion": "v1", "kind": "Service", "metadata": common.metadata(common.k8s_name(ep), labels),
            "spec": {"type": "ClusterIP",
                     "selector": {common.PART_OF: common.k8s_name(ep),
                                  "app.kubernetes.io/component": "online-deployment"},
                     "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]}}


def virtual_service(export: OnlineEndpointExport, options: Options) -> dict[str, Any]:
    ep = export.spec.name
    host = common.k8s_name(ep)

    def destination(deployment: str) -> dict[str, Any]:
        return {"host": service_of(export, deployment), "port": {"number": 80}}

    http: list[dict[str, Any]] = []
    # The first matching rule wins: the header pins go first; pinned requests are not mirrored.
    for unit in sorted(export.deployments, key=lambda u: u.spec.name):
        http.append({"name": common.k8s_name("pin", unit.spec.name),
                     "match": [{"headers": {PIN_HEADER: {"exact": unit.spec.name}}}],
                     "route": [{"destination": destination(unit.spec.name)}]})
    weighted = live(export)
    if weighted:
        rule: dict[str, Any] = {"name": "traffic",
                                "route": [{"destination": destination(d), "weight": w} for d, w in weighted]}
        if (mirrored := mirror(export)) is not None:
            rule["mirror"] = destination(mirrored[0])
            rule["mirrorPercentage"] = {"value": float(mirrored[1])}
        http.append(rule)
    labels = common.labels(ep, None, None, "routing")
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": common.metadata(host, labels),
            "spec": {"hosts": [host], "gateways": ["mesh", options.gateway], "http": http}}
