"""The batch scenario (`--only batch`): the issue's two batch targets, measured on a daemon of their own.

(A) No-code ONNX batch against a plain loop. A RandomForest (100 trees, depth 10) on 16 float features,
    converted with skl2onnx (zipmap off: label + probabilities tensors), scores 1,000,000 rows held in 8
    Parquet files of 125,000 rows (16 float32 features and an `id` string key). The peer is what a user
    would write: one fresh Python process that creates an `InferenceSession` with its default options,
    reads each file with pyarrow, stacks the feature columns into one float32 matrix and runs the model in
    chunks of the driver's batch size (AZUREML_BATCH_ROWS' default); its time runs from the session's
    creation to the last run, reading included (interpreter start and imports are reported beside it).
    The appliance: a batch deployment of the same model without a score.py (mini_batch_size 1,
    max_concurrency_per_instance 2, output_file_name predictions.parquet); its time is the job's own,
    ended_at - started_at (workers started, model loaded, files read, scored, parts written and merged),
    and invoke → Completed as the client saw it beside it. The arms alternate, --batch-runs times each;
    the verdict is the ratio of the medians, appliance / plain loop, against 0.90.
(B) The cost of a score.py deployment per mini-batch: a run() that returns its mini-batch (no work) over
    2,000 one-line files, mini_batch_size 1, max_concurrency_per_instance 1, append_row. Overhead per
    mini-batch = (the job's ended_at - started_at - the seconds the same run() takes called in a loop in
    one process over the same 2,000 mini-batches, init() excluded) / 2,000, against 5 ms.

Both arms run on all cores (there is no load generator to keep apart, whatever --pin says), and the CPU
the machine spent meanwhile outside them is recorded per run ("other load"), as in the other scenarios.
The model and the data are made once per work folder (--work keeps them between runs).
"""

from __future__ import annotations

import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
from servers import PYTHON, Daemon, Pinning, wait_until

ROWS = 1_000_000
FILES = 8
FEATURES = 16
TREES, DEPTH = 100, 10
SCRIPT_MINI_BATCHES = 2000
RATIO_TARGET = 0.90  # (A): appliance rows/s ≥ 90% of the plain loop's
OVERHEAD_TARGET_MS = 5.0  # (B): per mini-batch
SCHEMA = "https://azuremlschemas.azureedge.net/latest"
ONNX_ENDPOINT, SCRIPT_ENDPOINT = "bench-batch-onnx", "bench-batch-script"

Log = Callable[[str], None]

TRIVIAL_SCORE = '''"""(B): no work at all, so that the job's time is the appliance's own per mini-batch."""


def init():
    pass


def run(mini_batch):
    return mini_batch
'''

# The peer of (A), run as `python -c PLAIN_LOOP model batch_rows file...`: one JSON line on stdout.
PLAIN_LOOP = '''
import json, sys, time
started = time.perf_counter()
import numpy as np
import onnxruntime as ort
import pyarrow.parquet as pq
imported = time.perf_counter()
model, batch, files = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
name = session.get_inputs()[0].name
rows = labels = 0
for path in files:
    table = pq.read_table(path)
    features = [c for c in table.column_names if c != "id"]
    x = np.column_stack([table.column(c).to_numpy() for c in features]).astype(np.float32, copy=False)
    for start in range(0, len(x), batch):
        label, probabilities = session.run(None, {name: x[start:start + batch]})
        rows += len(label)
        labels += int(label.sum())
done = time.perf_counter()
print(json.dumps({"rows": rows, "label_sum": labels, "seconds": done - imported,
                  "startup_seconds": imported - started}))
'''


# -- data ---------------------------------------------------------------------------------------

def prepare(folder: Path, log: Log) -> dict[str, Path]:
    """model/model.onnx, parquet/part-N.parquet (1,000,000 rows in 8 files), tiny/NNNN.csv (2,000 files)
    and script/score.py under `folder`; made once (a marker file says they are complete)."""
    paths = {"model": folder / "model", "parquet": folder / "parquet", "tiny": folder / "tiny",
             "script": folder / "script"}
    marker = folder / ".ready"
    if marker.exists():
        return paths
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from skl2onnx import to_onnx
    from sklearn.ensemble import RandomForestClassifier

    started = time.perf_counter()
    rng = np.random.default_rng(20240601)

    def features(n: int) -> Any:
        return rng.normal(size=(n, FEATURES)).astype(np.float32)

    def labels(x: Any) -> Any:
        return (x[:, :4].sum(axis=1) + np.sin(3 * x[:, 5]) - x[:, 9] * x[:, 11] > 0).astype(np.int64)

    train = features(20_000)
    clf = RandomForestClassifier(n_estimators=TREES, max_depth=DEPTH, random_state=0, n_jobs=2)
    clf.fit(train, labels(train))
    onx = to_onnx(clf, train[:1], options={id(clf): {"zipmap": False}}, target_opset=17)
    paths["model"].mkdir(parents=True, exist_ok=True)
    (paths["model"] / "model.onnx").write_bytes(onx.SerializeToString())

    paths["parquet"].mkdir(parents=True, exist_ok=True)
    per_file = ROWS // FILES
    for k in range(FILES):
        x = features(per_file)
        ids = pa.array([f"r{k * per_file + i:07d}" for i in range(per_file)])
        table = pa.table({"id": ids, **{f"f{j:02d}": x[:, j] for j in range(FEATURES)}})
        pq.write_table(table, paths["parquet"] / f"part-{k}.parquet")

    paths["tiny"].mkdir(parents=True, exist_ok=True)
    for i in range(SCRIPT_MINI_BATCHES):
        (paths["tiny"] / f"{i:04d}.csv").write_text(f"a,b\n{i},{i % 7}\n")
    paths["script"].mkdir(parents=True, exist_ok=True)
    (paths["script"] / "score.py").write_text(TRIVIAL_SCORE)
    marker.write_text("ok\n")
    log(f"batch data made in {time.perf_counter() - started:.1f} s: {ROWS:,} rows in {FILES} Parquet files, "
        f"{SCRIPT_MINI_BATCHES} tiny files; RandomForest {TREES} trees, depth {DEPTH}")
    return paths


def _documents(paths: dict[str, Path]) -> list[dict[str, Any]]:
    def endpoint(name: str) -> dict[str, Any]:
        return {"$schema": f"{SCHEMA}/batchEndpoint.schema.json", "name": name}

    deployment = {"$schema": f"{SCHEMA}/modelBatchDeployment.schema.json", "type": "model"}
    onnx = {**deployment, "name": "onnx", "endpoint_name": ONNX_ENDPOINT,
            "model": {"name": "bench-forest", "path": str(paths["model"])},
            "resources": {"instance_count": 1},
            "settings": {"mini_batch_size": 1, "max_concurrency_per_instance": 2,
                         "output_file_name": "predictions.parquet"}}
    script = {**deployment, "name": "script", "endpoint_name": SCRIPT_ENDPOINT,
              "code_configuration": {"code": str(paths["script"]), "scoring_script": "score.py"},
              "compute": "azureml:batch-cluster", "resources": {"instance_count": 1},
              "settings": {"mini_batch_size": 1, "max_concurrency_per_instance": 1, "output_action": "append_row",
                           "output_file_name": "predictions.csv"}}
    source = str(paths["model"].parent / "batch.yml")
    return [{"body": body, "source": source}
            for body in (endpoint(ONNX_ENDPOINT), onnx, endpoint(SCRIPT_ENDPOINT), script)]


# -- measuring ----------------------------------------------------------------------------------

class Machine:
    """Cores the machine kept busy during a run outside `ours()` (CPU seconds of the arm's processes)."""

    def __init__(self, ours: Callable[[], float]) -> None:
        self.ours = ours
        self.other_cores = 0.0

    def __enter__(self) -> Machine:
        self._wall, self._busy, self._ours = time.perf_counter(), _busy(), self.ours()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = max(time.perf_counter() - self._wall, 1e-9)
        self.other_cores = round(max(_busy() - self._busy - (self.ours() - self._ours), 0.0) / wall, 3)


def _busy() -> float:
    t = psutil.cpu_times()
    return t.user + t.system + getattr(t, "nice", 0.0) + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _own_cpu() -> float:
    """This process's (it follows the job over HTTP meanwhile)."""
    t = psutil.Process().cpu_times()
    return t.user + t.system


def _tree_cpu(pid: int) -> float:
    """CPU seconds of a process and of its children, waited-for (ended workers) and running."""
    try:
        proc = psutil.Process(pid)
        t = proc.cpu_times()
        total = t.user + t.system + t.children_user + t.children_system
        for child in proc.children(recursive=True):
            try:
                c = child.cpu_times()
                total += c.user + c.system
            except psutil.NoSuchProcess:
                pass
        return total
    except psutil.NoSuchProcess:
        return 0.0


def plain_loop(model: Path, files: list[Path], batch_rows: int) -> dict[str, Any]:
    with Machine(_children_cpu) as machine:
        t0 = time.perf_counter()
        done = subprocess.run([PYTHON, "-c", PLAIN_LOOP, str(model), str(batch_rows), *map(str, files)],
                              capture_output=True, text=True, timeout=600)
        wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"the plain loop exited {done.returncode}:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result.update(rows_per_s=result["rows"] / result["seconds"], process_wall_seconds=wall,
                  other_load_cores=machine.other_cores)
    return result


def _seconds(job: dict[str, Any]) -> float:
    started, ended = (datetime.fromisoformat(job[k].replace("Z", "+00:00")) for k in ("started_at", "ended_at"))
    return (ended - started).total_seconds()


def run_job(daemon: Daemon, endpoint: str, deployment: str, folder: Path, timeout: float = 600) -> dict[str, Any]:
    """Invoked, and followed until it ends: the job's view, and the client's invoke → final state."""
    assert daemon.proc
    with Machine(lambda: _tree_cpu(daemon.proc.pid if daemon.proc else 0) + _own_cpu()) as machine:
        t0 = time.perf_counter()
        answer = daemon.api("POST", f"/batch-endpoints/{endpoint}/jobs",
                            json={"input": str(folder), "deployment_name": deployment})
        if answer.status_code != 201:
            raise RuntimeError(f"invoke of {endpoint}/{deployment} answered {answer.status_code}: {answer.text}")
        name = answer.json()["name"]

        def ended() -> dict[str, Any] | None:
            job = daemon.api("GET", f"/jobs/{name}").json()
            return job if job["status"] in ("Completed", "Failed", "Canceled") else None

        job = wait_until(ended, timeout, f"batch job {name} to end", poll=0.1)
        wall = time.perf_counter() - t0
    if job["status"] != "Completed":
        raise RuntimeError(f"batch job {name} ended {job['status']}: {job.get('error')}")
    return {"job": name, "seconds": _seconds(job), "invoke_to_completed_s": wall, "progress": job["progress"],
            "output": str(Path(job["outputs"]["score"]["path"]) / job["output_file_name"]),
            "other_load_cores": machine.other_cores}


def run_in_loop(script: Path, files: list[Path]) -> float:
    """Seconds the script's run() takes over the same mini-batches (one file each) in this process,
    init() excluded: what (B)'s job would cost with no appliance around it."""
    spec = importlib.util.spec_from_file_location("bench_trivial_score", script)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.init()
    batches = [[str(f)] for f in files]
    t0 = time.perf_counter()
    for mini_batch in batches:
        module.run(mini_batch)
    return time.perf_counter() - t0


def _check_output(path: str, expected_rows: int, label_sum: int) -> dict[str, Any]:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=["label"])
    found = int(pc.sum(table.column("label")).as_py() or 0)
    return {"rows": table.num_rows, "label_sum": found,
            "same_as_plain_loop": table.num_rows == expected_rows and found == label_sum}


def measure(work: Path, log: Log, exe: str, runs: int) -> dict[str, Any]:
    from appliance.scoring.tabular import DEFAULT_ROWS

    batch_rows = int(os.environ.get("AZUREML_BATCH_ROWS", DEFAULT_ROWS))
    paths = prepare(work / "batch-data", log)
    model = paths["model"] / "model.onnx"
    files = sorted(paths["parquet"].glob("*.parquet"))
    tiny = sorted(paths["tiny"].glob("*.csv"))
    result: dict[str, Any] = {
        "rows": ROWS, "files": len(files), "batch_rows": batch_rows, "runs": runs,
        "model": f"RandomForestClassifier({TREES} trees, max_depth {DEPTH}) on {FEATURES} float32 features, "
                 "skl2onnx, zipmap off",
        "pinning": "none: both arms on all cores",
        "machine_cpus": os.cpu_count(), "python": sys.version.split()[0],
    }
    daemon = Daemon("batch", work, Pinning("none"), exe=exe).start()
    try:
        log(f"batch: daemon on {daemon.url} (pid {daemon.proc.pid if daemon.proc else '?'})")
        answer = daemon.api("POST", "/apply", json={"documents": _documents(paths)})
        if answer.status_code != 200:
            raise RuntimeError(f"apply of the batch deployments answered {answer.status_code}: {answer.text}")
        plain: list[dict[str, Any]] = []
        appliance: list[dict[str, Any]] = []
        for i in range(runs):  # alternated, the first arm switched each time: drift hits both alike
            for arm in ("plain", "appliance") if i % 2 == 0 else ("appliance", "plain"):
                if arm == "plain":
                    r = plain_loop(model, files, batch_rows)
                    plain.append(r)
                    log(f"    (A) plain loop: {r['rows_per_s']:,.0f} rows/s ({r['seconds']:.2f} s; process "
                        f"{r['process_wall_seconds']:.2f} s); other load {r['other_load_cores']:.2f} cores")
                else:
                    r = run_job(daemon, ONNX_ENDPOINT, "onnx", paths["parquet"])
                    r["rows_per_s"] = ROWS / r["seconds"]
                    appliance.append(r)
                    log(f"    (A) appliance no-code ONNX: {r['rows_per_s']:,.0f} rows/s (job {r['seconds']:.2f} s, "
                        f"invoke → Completed {r['invoke_to_completed_s']:.2f} s); other load "
                        f"{r['other_load_cores']:.2f} cores")
        appliance[-1]["check"] = _check_output(appliance[-1]["output"], plain[-1]["rows"], plain[-1]["label_sum"])
        p = statistics.median(r["rows_per_s"] for r in plain)
        a = statistics.median(r["rows_per_s"] for r in appliance)
        # Not the verdict's: the plain loop's whole process (interpreter start and imports too) against
        # invoke → Completed, both as a wall clock outside sees them.
        outside = (statistics.median(r["process_wall_seconds"] for r in plain)
                   / statistics.median(r["invoke_to_completed_s"] for r in appliance))
        result["onnx"] = {"plain_loop": plain, "appliance": appliance, "plain_rows_per_s": p, "appliance_rows_per_s": a,
                          "appliance_invoke_to_completed_s": statistics.median(r["invoke_to_completed_s"]
                                                                               for r in appliance),
                          "ratio": a / p, "ratio_outside_walls": outside}
        log(f"    (A) medians: appliance {a:,.0f} vs plain loop {p:,.0f} rows/s: {a / p:.3f}×; output check "
            f"{appliance[-1]['check']}")

        script: list[dict[str, Any]] = []
        for _ in range(runs):
            in_loop = run_in_loop(paths["script"] / "score.py", tiny)
            r = run_job(daemon, SCRIPT_ENDPOINT, "script", paths["tiny"])
            r["run_in_loop_s"] = in_loop
            r["overhead_us_per_mini_batch"] = (r["seconds"] - in_loop) / len(tiny) * 1e6
            script.append(r)
            log(f"    (B) score.py: job {r['seconds']:.2f} s for {len(tiny)} mini-batches, run() in a loop "
                f"{in_loop * 1000:.1f} ms: {r['overhead_us_per_mini_batch']:,.0f} µs per mini-batch; other load "
                f"{r['other_load_cores']:.2f} cores")
        result["script"] = {"mini_batches": len(tiny), "runs": script,
                            "overhead_us_per_mini_batch": statistics.median(r["overhead_us_per_mini_batch"]
                                                                            for r in script)}
    finally:
        daemon.stop()
    return result


# -- verdicts -----------------------------------------------------------------------------------

def targets(batch: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The targets table's rows for (A) and (B), in report.py's shape."""
    if not batch:
        return []
    out = []
    onnx = batch.get("onnx")
    if onnx:
        ratio = onnx["ratio"]
        check = (onnx["appliance"][-1].get("check") or {}) if onnx["appliance"] else {}
        note = (f"{batch['rows']:,} rows in {batch['files']} Parquet files, {batch['model']}; medians of "
                f"{len(onnx['appliance'])} alternated runs each; appliance = job ended_at - started_at "
                f"(invoke → Completed {onnx['appliance_invoke_to_completed_s']:.2f} s); plain loop = one process, "
                f"default session options, chunks of {batch['batch_rows']:,} rows, reading included")
        if onnx.get("ratio_outside_walls"):
            note += (f"; walls seen from outside (the plain loop's whole process, interpreter start and imports "
                     f"included, vs invoke → Completed): {onnx['ratio_outside_walls']:.2f}×")
        if check and not check.get("same_as_plain_loop"):
            note += f"; OUTPUT DIFFERS from the plain loop's: {check}"
        out.append({"target": "(A) no-code ONNX batch: rows/s vs a plain onnxruntime loop", "wanted": "≥ 0.90×",
                    "measured": f"{ratio:.2f}× ({onnx['appliance_rows_per_s']:,.0f} vs "
                                f"{onnx['plain_rows_per_s']:,.0f} rows/s)",
                    "result": "PASS" if ratio >= RATIO_TARGET else "FAIL", "note": note})
    script = batch.get("script")
    if script:
        us = script["overhead_us_per_mini_batch"]
        runs = script["runs"]
        jobs = ", ".join(f"{r['seconds']:.2f}" for r in runs)
        out.append({"target": "(B) score.py batch deployment: added time per mini-batch",
                    "wanted": f"≤ {OVERHEAD_TARGET_MS:.0f} ms",
                    "measured": f"{us:,.0f} µs",
                    "result": "PASS" if us <= OVERHEAD_TARGET_MS * 1000 else "FAIL",
                    "note": f"(job seconds - run() in a loop) / {script['mini_batches']:,} mini-batches of one file, "
                            f"median of {len(runs)} runs (jobs {jobs} s); "
                            "worker start and output merge included"})
    return out
