"""The dynamic batching scenario (`harness.py --only batching`): one no-code ONNX deployment at 64 concurrent
clients (wrk -c64), with dynamic batching on and off, alternated on fresh daemons.

The model is an MLP, 256 → 1024 → 1024 → 10 in float32 (about 1.3 M weights, 5 MB), chosen because a call's
cost is per call, not per row: a batch of one is a matrix-vector product that streams every weight for one
row (~350 µs here), while a batch of 32 reuses each weight 32 times (~700 µs for all 32, ~22 µs a row). That
is where batching pays; iris's LogisticRegression takes ~5 µs a call, so a server's ~250 µs per request
would hide any gain. Its rows are independent (exact answers: tests/unit/test_batching.py).
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

ENDPOINT = "bench-batching"
FEATURES, HIDDEN, OUTPUTS = 256, 1024, 10
MAX_BATCH, DELAY_US, CLIENTS = 32, 500, 64
SCHEMA = "$schema: https://azuremlschemas.azureedge.net/latest/managedOnlineDeployment.schema.json\n"


def prepare(folder: Path) -> tuple[Path, bytes]:
    """model/model.onnx, endpoint.yml, on.yml and off.yml (the same deployment, batched or not) under
    `folder`; and the body of one request (one row)."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(11)
    inits, nodes, prev, width = [], [], "x", FEATURES
    for i, out in enumerate((HIDDEN, HIDDEN)):
        inits += [numpy_helper.from_array((rng.normal(size=(width, out)) / np.sqrt(width)).astype(np.float32), f"w{i}"),
                  numpy_helper.from_array((rng.normal(size=(out,)) * 0.1).astype(np.float32), f"b{i}")]
        nodes += [helper.make_node("Gemm", [prev, f"w{i}", f"b{i}"], [f"g{i}"]),
                  helper.make_node("Relu", [f"g{i}"], [f"h{i}"])]
        prev, width = f"h{i}", out
    inits.append(numpy_helper.from_array((rng.normal(size=(width, OUTPUTS)) / np.sqrt(width)).astype(np.float32),
                                         "wo"))
    nodes.append(helper.make_node("MatMul", [prev, "wo"], ["y"]))
    graph = helper.make_graph(nodes, "mlp",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", FEATURES])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", OUTPUTS])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    (folder / "model").mkdir(parents=True, exist_ok=True)
    (folder / "model" / "model.onnx").write_bytes(model.SerializeToString())
    (folder / "endpoint.yml").write_text(f"name: {ENDPOINT}\nauth_mode: key\ntraffic:\n  main: 100\n")
    common = (f"{SCHEMA}name: main\nendpoint_name: {ENDPOINT}\nmodel:\n  name: mlp\n  path: ./model/\n"
              f"instance_type: Standard_DS3_v2\ninstance_count: 1\nrequest_settings:\n"
              f"  max_concurrent_requests_per_instance: {CLIENTS}\n")
    (folder / "off.yml").write_text(common)
    (folder / "on.yml").write_text(common + f"environment_variables:\n  APPLIANCE_MAX_BATCH_SIZE: \"{MAX_BATCH}\"\n"
                                            f"  APPLIANCE_MAX_QUEUE_DELAY_US: \"{DELAY_US}\"\n")
    row = np.round(rng.uniform(-2, 2, size=FEATURES), 2).tolist()
    return folder, ('{"data": [[' + ",".join(map(str, row)) + "]]}").encode()


def targets(result: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Throughput on/off (the median of the pairs' own ratios) against 1.5×; batched p99 against the
    unbatched p99 plus the configured delay plus one batch's run (the most batching may add to a request:
    it waits at most the delay for others, then its batch's run)."""
    if not result or not result.get("on") or not result.get("off"):
        return []
    from report import _ms, _target, median_interval

    on, off = result["on"], result["off"]
    ratios = [a["requests_per_s"] / b["requests_per_s"] for a, b in zip(on, off, strict=False)]
    low, high, coverage = median_interval(ratios)
    ratio = statistics.median(ratios)
    rps_on, rps_off = (statistics.median(r["requests_per_s"] for r in arm) for arm in (on, off))
    shared = statistics.median(r["requests_per_call"] or 0 for r in on)
    out = [_target(f"dynamic batching at {CLIENTS} clients: throughput, batched vs unbatched", "≥ 1.5×",
                   f"{ratio:.2f}× (medians {rps_on:,.0f} vs {rps_off:,.0f} req/s)", None,
                   f"MLP {FEATURES}→{HIDDEN}→{HIDDEN}→{OUTPUTS}, wrk -c{CLIENTS}, max batch {MAX_BATCH}, delay "
                   f"{DELAY_US} µs; {len(ratios)} alternated pairs on fresh daemons, {coverage:.0%} interval "
                   f"{low:.2f}× to {high:.2f}×; {shared:.1f} requests per model call",
                   "PASS" if low >= 1.5 else "FAIL" if high < 1.5 else "UNDECIDED")]
    p99_on, p99_off = (statistics.median(r["latency_ms"]["p99"] for r in arm) for arm in (on, off))
    batch_ms = statistics.median(r["batch_ms"] or 0 for r in on)
    bound = p99_off + DELAY_US / 1000 + batch_ms
    out.append(_target(f"dynamic batching at {CLIENTS} clients: p99", "≤ unbatched p99 + delay + one batch's run",
                       f"{_ms(p99_on)} vs {_ms(bound)} ({_ms(p99_off)} + {DELAY_US} µs + {_ms(batch_ms)})",
                       p99_on <= bound, "medians of the arms' runs; a batch's run: its average CPU time"))
    return out
