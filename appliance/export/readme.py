"""The README that goes with the manifests: the key Secret, applying, what each target needs."""

from __future__ import annotations

from appliance.export import batch, common, workloads
from appliance.export.inputs import BatchEndpointExport, ImageRef, OnlineEndpointExport, Options

NEEDS = {
    "gateway": "a Gateway API v1.3+ implementation (standard channel CRDs: `kubectl apply -f "
               "https://github.com/kubernetes-sigs/gateway-api/releases/download/v1.3.0/standard-install.yaml`) and "
               "a Gateway the routes attach to (`parentRefs`: `{gateway}`); v1.2's standard CRDs lack "
               "RequestMirror's `percent`.",
    "istio": "Istio 1.22+ (VirtualService `networking.istio.io/v1`), sidecar injection or ambient mode for the "
             "namespaces, and the `{gateway}` Gateway for traffic from outside the mesh (`mesh` serves calls "
             "inside it).",
    "kserve": "KServe v0.20+ in Standard (raw deployment) mode (`spec.canary[]`), cert-manager, and the "
              "`kserve-tritonserver` ServingRuntime for ONNX models. KServe can't mirror requests or route by the "
              "`azureml-model-deployment` header: use --target istio or gateway for those.",
}


def render(online: list[OnlineEndpointExport], batches: list[BatchEndpointExport], options: Options,
           images: list[ImageRef], warnings: list[str]) -> str:
    dev = options.dev_namespace or f"{options.namespace}-dev"
    lines = ["# Exported by `appliance export`", "",
             f"Target: **{options.target}**. `base/` has no namespace; `overlays/dev` (namespace `{dev}`, one "
             f"replica each) and `overlays/prod` (namespace `{options.namespace}`, Azure's `instance_count`) set "
             "the namespace, replicas, labels and the image digests.", "",
             "## 1. What the cluster needs", "",
             "- Kubernetes 1.33+ (Indexed Jobs' `backoffLimitPerIndex`, `maxFailedIndexes`).",
             "- " + NEEDS[options.target].format(gateway=options.gateway),
             "- For GPU deployments: the NVIDIA GPU Operator (or device plugin + feature discovery): pods ask for "
             "`nvidia.com/gpu`, select `nvidia.com/gpu.present=true` and tolerate the `nvidia.com/gpu` taint.",
             "", "## 2. Images", ""]
    for image in images:
        state = "pinned by digest" if image.pinned else \
            "**placeholder**: not pushed; the digest is the local image id, which no registry serves"
        lines.append(f"- `{image.name}` → `{image.reference}` ({state})")
    if any(not i.pinned for i in images):
        lines += ["", "Push them and pin the digests: `appliance export ... --registry REG --push` (or `docker push`, "
                  "then edit `images:` in both overlays)."]
    lines += ["", "Images run as user 10001 with a read-only root filesystem (an emptyDir is `/tmp`), serve on "
              "port 8080, and need a pull secret if the registry is private (add `imagePullSecrets` to the "
              "ServiceAccounts).", ""]
    if online:
        lines += ["## 3. The endpoint keys (a Secret per endpoint)", "",
                  "Containers answer `/score` and `/v2/.../infer` only with `Authorization: Bearer <key>`, the key "
                  f"read from the Secret mounted at `{common.KEYS_DIR}` (files `primaryKey`, `secondaryKey`). "
                  "No key is in these files; create the Secret in each namespace from the appliance's keys:", "",
                  "```sh"]
        for export in sorted(online, key=lambda e: e.spec.name):
            ep = export.spec.name
            secret = workloads.keys_secret(ep)
            for ns in (dev, options.namespace):
                lines += [f"kubectl create namespace {ns} --dry-run=client -o yaml | kubectl apply -f -",
                          f"kubectl -n {ns} create secret generic {secret} \\",
                          f"  --from-literal=primaryKey=\"$(appliance online-endpoint get-credentials -n {ep} "
                          "--query primaryKey -o tsv)\" \\",
                          f"  --from-literal=secondaryKey=\"$(appliance online-endpoint get-credentials -n {ep} "
                          "--query secondaryKey -o tsv)\""]
        lines += ["```", "", "After regenerating a key, update the Secret and restart the pods "
                  "(`kubectl rollout restart deployment -n NS -l app.kubernetes.io/part-of=ENDPOINT`).", ""]
    lines += ["## 4. Apply", "", "```sh", "kubectl kustomize overlays/prod      # look first (works offline)",
              "kubectl apply -k overlays/dev", "kubectl apply -k overlays/prod", "```", ""]
    if online:
        lines += ["## Traffic", ""]
        for export in sorted(online, key=lambda e: e.spec.name):
            live = ", ".join(f"{k}={v}%" for k, v in sorted(export.spec.traffic.items()) if v > 0) or "none"
            mirror = ", ".join(f"{k}={v}%" for k, v in sorted(export.spec.mirror_traffic.items()) if v > 0) or "none"
            lines.append(f"- `{export.spec.name}`: live {live}; mirror {mirror}; header "
                         "`azureml-model-deployment: NAME` pins a request to deployment NAME.")
        lines.append("")
        lines += ["## Resources from `instance_type`", "",
                  "| Azure SKU | CPU (request) | memory (request = limit) | nvidia.com/gpu |", "|---|---|---|---|"]
        used = sorted({u.spec.instance_type.lower() for e in online for u in e.deployments
                       if u.spec.instance_type and u.spec.instance_type.lower() in common.SKUS})
        for sku in used or list(common.SKUS)[:3]:
            cpu, mem, gpu = common.SKUS[sku]
            lines.append(f"| {sku} | {cpu:g} | {mem}Gi | {gpu} |")
        lines += ["", "The full table is `appliance/export/common.py` `SKUS` (memory is ~85% of the VM's). "
                  "A Kubernetes deployment's own `resources` are used as written.", ""]
    if batches:
        lines += ["## Batch", "",
                  "Each batch deployment is an Indexed Job: pod `JOB_COMPLETION_INDEX` i of N scores every N-th "
                  f"mini-batch of the files under `{batch.INPUT}` (`python -m appliance.scoring.shard`) and writes "
                  f"`{batch.OUTPUT}/parts/<mini-batch>` plus `{batch.OUTPUT}/shards/<i>.json`. Create the "
                  "PersistentVolumeClaims it mounts:", ""]
        for bexport in sorted(batches, key=lambda e: e.spec.name):
            for unit in sorted(bexport.deployments, key=lambda u: u.spec.name):
                source, sink = batch.claims(unit)
                lines.append(f"- `{bexport.spec.name}/{unit.spec.name}`: `{source}` (input, read-only), "
                             f"`{sink}` (output); {batch.shards(unit)} shard(s).")
        lines += ["", "The CronJob variant is suspended: set `schedule` and `timeZone`, then `suspend: false`.", ""]
    if warnings:
        lines += ["## Warnings", ""] + [f"- {w}" for w in warnings] + [""]
    return "\n".join(lines)
