"""The benchmark harness: every server under the same load from the same client, one table, one JSON.

    .venv/bin/python tests/benchmarks/harness.py [--duration 10] [--out bench-results.json]

Scenarios (servers.py starts them, loadgen.py loads them, report.py prints and judges):
  a         azmlinfsrv 1.5.1 with a score.py over the ONNX model (Azure's own inference server)
  b         the appliance, the same model as a no-code ONNX deployment, through the full router:
            key auth, blue/green at 90/10, request log on (the default runtime: `inprocess`)
  b-nolog   (b) on a daemon started with --no-request-log
  b-mirror  (b) with 50% of live traffic mirrored to a third deployment (0% live)
  c         the appliance with the same score.py (its own endpoint, key auth, request log on)
  d         one appliance worker addressed directly over TCP, no router
  e         a minimal raw ASGI app (uvicorn + httptools) calling onnxruntime: the practical floor
  batch     batch jobs (batch_bench.py): no-code ONNX over 1,000,000 Parquet rows against a plain
            onnxruntime loop (≥ 0.90×), and a score.py's cost per mini-batch (≤ 5 ms); `--only batch`
            runs these alone
  drift     a drift report over 10,000,000 collected rows (drift_bench.py), a day of the data collector's
            files, through GET /endpoints/E/drift and `appliance monitor drift` (≤ 10 s; `--only drift`)
  tui       (b) with `appliance tui` open in a tmux terminal on its live endpoints view, alternated with
            it closed (`--only tui`)
  prometheus (b) with GET /metrics scraped once a second (as Prometheus would, with the admin token),
            alternated with no scraper (`--only prometheus`)
  collect   (b) with Azure's data collector on (inputs and outputs, sampling_rate 1.0), alternated with it
            off (`--only collect`)
  mirror-apart (b) with 50% mirrored to a third deployment that runs as a worker process on a core other than
            the daemon's (CPU 2 where there are three; else CPU 0, the load generator's), alternated with no
            mirroring (`--only mirror-apart`): what mirroring costs the live path where the copy has a core
  batching  an MLP as a no-code ONNX deployment at 64 clients (wrk -c64), dynamic batching on (max batch 32,
            delay 500 µs) alternated with off on fresh daemons (batching_bench.py; `--only batching`):
            throughput ratio (≥ 1.5×) and p99 (≤ unbatched p99 + delay + one batch's run)
Each gets a wrk warm-up, wrk -t1 -c16 (throughput), wrk -t1 -c1 (latency) and an open-loop run at a
share of its own c16 throughput (openloop.py: latency from the scheduled send time); every server after
(a) gets a second open-loop run at (a)'s rate, the same offered load for the tails. The request-log
and mirror costs are also measured by alternating short c16 runs of both arms, on a fresh daemon for
each pair of runs, switched between them, so that drift on a shared machine hits both alike
(--report pools the pairs of several saved runs of the same code, which each result records, when
one run's cannot decide). Then the
time from `appliance apply` to the first 200, a hot reload when `appliance up --watch` exists, and the
start-up of a CLI command (`endpoint list -o json` against a running daemon, `--help`; a fresh process
each, the median of --startup-runs) against 150 ms, the one-file build's too when dist/appliance exists
(--startup-only: that alone).
Each server runs alone: the previous one is stopped before the next starts. CPU used meanwhile by
processes outside the benchmark is reported ("other load"), so a disturbed run shows as one.

Pinning (--pin): split (default) puts the load generator on CPU 0 and every server process, workers
included, on CPU 1; client pins only the load generator; none pins nothing.

Installs what is missing (wrk with apt-get, azmlinfsrv in a venv cached under ~/.cache/appliance-bench,
py-spy there too for --profile), binds 127.0.0.1 only, and every run is bounded in time. Not a test:
pytest never collects it (no test_*.py here).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import batch_bench
import batching_bench
import drift_bench
import httpx
import psutil
import report
from loadgen import run_open_loop, run_wrk, wrk_script
from rich.console import Console
from servers import (
    APPLIANCE,
    AZMLINFSRV_VERSION,
    BODY,
    ENDPOINT,
    SCORE_PY,
    Daemon,
    Pinning,
    Project,
    Target,
    code_identity,
    deployment_yaml,
    endpoint_yaml,
    ensure_azmlinfsrv,
    ensure_py_spy,
    ensure_wrk,
    onnxruntime_version,
    prepare_project,
    start_azmlinfsrv,
    start_floor,
    start_worker,
    wait_until,
)

ROOT_DIR = Path(__file__).resolve().parents[2]

LABELS = {
    "a": f"azmlinfsrv {AZMLINFSRV_VERSION} + score.py",
    "b": "appliance no-code, router (key, 90/10, log on)",
    "b-nolog": "(b) with --no-request-log",
    "b-mirror": "(b) + 50% mirrored to a 3rd deployment",
    "c": "appliance + the same score.py, router",
    "d": "one appliance worker, no router",
    "e": "floor: raw ASGI + onnxruntime",
}
ORDER = list(LABELS)


class Bench:
    def __init__(self, args: argparse.Namespace, console: Console) -> None:
        self.args = args
        self.console = console
        self.pin = Pinning.choose(args.pin)
        self.code = code_identity(args.appliance)  # taken before the runs, not after
        self.runs: dict[str, list[dict[str, Any]]] = {}
        self.ab: dict[str, dict[str, list[float]]] = {}  # name → arm → req/s of each run
        self.ab_cpu: dict[str, dict[str, list[float]]] = {}  # name → arm → server µs CPU per request
        self.round = 1
        self.work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="appliance-bench-"))
        self.work.mkdir(parents=True, exist_ok=True)
        self.logs = self.work / "logs"
        self.wrk = ""
        self.profiles: dict[str, Any] = {}
        self.daemon_apply: Daemon | None = None
        self.batch: dict[str, Any] | None = None  # batch_bench.measure's
        self.drift: dict[str, Any] | None = None  # drift_bench.measure's
        self.batching: dict[str, list[dict[str, Any]]] | None = None  # arm → its runs (batching_bench.py)
        self._scraping: threading.Event | None = None  # the prometheus arm's scraper, while one runs

    def log(self, message: str) -> None:
        self.console.print(f"[dim]{time.strftime('%H:%M:%S')} {message}[/dim]", highlight=False)

    def wanted(self, key: str) -> bool:
        return not self.args.only or key in self.args.only

    # -- one scenario ---------------------------------------------------------------------------

    def measure(self, key: str, target: Target) -> dict[str, Any]:
        d, c = self.args.duration, self.args.connections
        self.log(f"({key}) {LABELS[key]}: {target.url}")
        script = wrk_script(target, self.work)
        run_wrk(self.wrk, target, script, c, self.args.warmup, self.pin)
        procs = _processes(target)
        with Noise(procs) as noise:
            c16 = run_wrk(self.wrk, target, script, c, d, self.pin)
        cpu = {role: us * 1e6 / max(c16["ok"], 1) for role, us in noise.server_cpu.items()}
        c16["other_load_cores"] = noise.other_cores
        self.log(f"    wrk c{c}: {c16['requests_per_s']:,.0f} req/s, p50 {c16['latency_ms']['p50']:.3f} ms, "
                 f"p99 {c16['latency_ms']['p99']:.3f} ms, errors {c16['errors']}; other load on the machine "
                 f"{noise.other_cores:.2f} cores")
        with Noise(procs) as noise:
            c1 = run_wrk(self.wrk, target, script, 1, d, self.pin)
        c1["other_load_cores"] = noise.other_cores
        self.log(f"    wrk c1: {c1['requests_per_s']:,.0f} req/s, p50 {c1['latency_ms']['p50']:.3f} ms, "
                 f"p99 {c1['latency_ms']['p99']:.3f} ms, errors {c1['errors']}")
        rate = max(1.0, self.args.open_loop_fraction * c16["requests_per_s"])
        capped = rate > self.args.open_loop_max_rate
        rate = min(rate, self.args.open_loop_max_rate)
        ol = self._open_loop(rate, target, procs, " (capped)" if capped else "")
        ol["capped"] = capped
        result = {"label": LABELS[key], "url": target.url, "pids": target.pids,
                  "cpu_us_per_request": {r: round(v, 1) for r, v in cpu.items()},
                  "wrk_c16": c16, "wrk_c1": c1, "open_loop": ol}
        baseline = self.runs.get("a", [])
        if key != "a" and len(baseline) == self.round:
            # The same offered load as (a)'s own open-loop run: the tail a user load-testing at that rate
            # sees, like for like (the run above is at a share of each server's own capacity).
            result["open_loop_at_a"] = self._open_loop(baseline[-1]["open_loop"]["target_rate"], target, procs,
                                                       " at (a)'s rate")
        self.runs.setdefault(key, []).append(result)
        return result

    def _open_loop(self, rate: float, target: Target, procs: dict[str, psutil.Process], what: str) -> dict[str, Any]:
        with Noise(procs) as noise:
            ol = run_open_loop(target, rate, self.args.duration, self.pin)
        ol["other_load_cores"] = noise.other_cores
        ol["saturated"] = (ol["requests_per_s"] < 0.97 * rate or ol["errors"] > 0
                           or (ol["send_lag_ms"]["p99"] or 0) > 10)
        self.log(f"    open loop at {rate:,.0f}/s{what}: p50 {ol['latency_ms']['p50']} ms, "
                 f"p99 {ol['latency_ms']['p99']} ms, p99.9 {ol['latency_ms']['p99.9']} ms, errors {ol['errors']} "
                 f"(send lag p99 {ol['send_lag_ms']['p99']} ms){' SATURATED' if ol['saturated'] else ''}")
        return ol

    # -- the servers ------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        if self.args.startup_only:
            with contextlib.ExitStack() as stack:
                return self.document(None, None, self.startup(stack))
        if self.args.only and set(self.args.only) <= {"batch", "drift"}:  # no load generator, no apply timings
            self.standalone()
            return self.document(None, None, None)
        self.wrk = ensure_wrk(self.log)
        azml = ensure_azmlinfsrv(self.log) if self.wanted("a") else None
        project = prepare_project(self.work / "project", self.args.request_settings)
        self.log(f"work folder {self.work}; model {project.model}")
        with contextlib.ExitStack() as stack:
            for number in range(1, self.args.rounds + 1):
                self.round = number
                if self.args.rounds > 1:
                    self.log(f"round {self.round} of {self.args.rounds}")
                if azml:
                    proc, target = start_azmlinfsrv(azml, project, self.logs, self.pin)
                    stack.callback(proc.stop)
                    self.measure("a", target)
                    proc.stop()
                if any(self.wanted(k) for k in ("b", "b-nolog", "b-mirror", "c", "tui", "prometheus", "collect",
                                                 "mirror-apart")):
                    self.appliance(project, stack)
                for key, start in (("d", start_worker), ("e", start_floor)):
                    if self.wanted(key):
                        proc, target = start(project, self.logs, self.pin)
                        stack.callback(proc.stop)
                        self.measure(key, target)
                        proc.stop()
            if self.wanted("batching"):
                self.batching_arms()
            self.standalone()
            apply = self.apply_time(project, stack) if not self.args.skip_apply else None
            reload = self.hot_reload(project, stack) if not self.args.skip_apply else None
            startup = self.startup(stack) if not self.args.skip_startup else None
        return self.document(apply, reload, startup)

    def standalone(self) -> None:
        """The scenarios with daemons and data of their own: batch, drift."""
        if self.wanted("batch"):
            self.batch = batch_bench.measure(self.work, self.log, self.args.appliance, self.args.batch_runs)
        if self.wanted("drift"):
            self.drift = drift_bench.measure(self.work, self.log, self.args.appliance, self.args.drift_runs)

    def appliance(self, project: Project, stack: contextlib.ExitStack) -> None:
        daemon = Daemon(f"log-r{self.round}", self.work, self.pin, exe=self.args.appliance).start()
        stack.callback(daemon.stop)
        self.log(f"appliance daemon on {daemon.url} (pid {daemon.proc.pid if daemon.proc else '?'})")
        files = ["blue.yml", "green.yml", "shadow.yml", "endpoint.yml", "script.yml", "script-endpoint.yml"]
        daemon.cli("apply", *[x for f in files for x in ("-f", f)], cwd=project.root)
        live = daemon.target("b", ENDPOINT)
        if self.wanted("b"):
            self.measure("b", live)
            if self.args.profile and self.round == 1:
                self.profile(live, "blue")
        if self.wanted("b-nolog"):
            quiet = Daemon(f"nolog-r{self.round}", self.work, self.pin, request_log=False,
                           exe=self.args.appliance).start()
            stack.callback(quiet.stop)
            quiet.cli("apply", *[x for f in files[:4] for x in ("-f", f)], cwd=project.root)
            self.measure("b-nolog", quiet.target("b-nolog", ENDPOINT))
            quiet.stop()
            if self.wanted("b"):
                self.alternate_arms("request_log", project, files[:4])

        if self.wanted("b-mirror"):
            daemon.cli("endpoint", "update", ENDPOINT, "--mirror-traffic", "shadow=50")
            self.measure("b-mirror", daemon.target("b-mirror", ENDPOINT))
            daemon.cli("endpoint", "update", ENDPOINT, "--mirror-traffic", "shadow=0")
            if self.wanted("b"):
                self.alternate_arms("mirror", project, files[:4])
        if self.wanted("mirror-apart"):
            self.alternate_arms("mirror_apart", project, ["blue.yml", "green.yml", "shadow-process.yml",
                                                          "endpoint.yml"])
        if self.wanted("c"):
            script = daemon.target("c", "bench-script")
            self.measure("c", script)
            if self.args.profile and self.round == 1:
                self.profile(script, "main")
        if self.wanted("tui"):
            self.alternate_arms("tui", project, files[:4])
        if self.wanted("prometheus"):
            self.alternate_arms("prometheus", project, files[:4])
        if self.wanted("collect"):
            self.alternate_arms("collect", project, files[:4])
        daemon.stop()

    def alternate_arms(self, name: str, project: Project, files: list[str]) -> None:
        """A/B runs of `name` ("request_log", "mirror", "tui", "prometheus" or "collect"), each pair on a fresh daemon,
        the arms switched on it between the runs (`appliance request-log on|off`; `endpoint update
        --mirror-traffic`; `appliance tui` attached in a tmux terminal, on its live endpoints view, or not
        running; a scraper of GET /metrics once a second, or none; data collection of inputs and outputs at 100%
        on both live deployments, or off). Two
        processes differ by a few µs per request on their own (heap layout, address space): one process
        per pair keeps that out of the pair's ratio, and a fresh one for each pair keeps any one process
        from biasing every pair. A switched-off log first writes what it holds, so that no arm pays for
        the other's rows."""
        for i in range(self.args.ab_pairs):
            with contextlib.ExitStack() as stack:
                daemon, target = self._ab_daemon(f"ab{i}-{name}", project, files, stack)
                for arm in ("on", "off") if i % 2 == 0 else ("off", "on"):
                    if name == "tui":
                        self._tui(daemon, arm == "on", stack)
                    elif name == "prometheus":
                        self._scraper(daemon, arm == "on", stack)
                    elif name == "collect":  # Azure's data collector on both live deployments, at 100%
                        enabled = "true" if arm == "on" else "false"
                        sets = [f"data_collector.collections.{c}.{k}" for c in ("model_inputs", "model_outputs")
                                for k in (f"enabled={enabled}", "sampling_rate=1.0")]
                        for deployment in ("blue", "green"):
                            daemon.cli("deployment", "update", ENDPOINT, deployment, "--set", *sets)
                    elif name in ("mirror", "mirror_apart"):
                        daemon.cli("endpoint", "update", ENDPOINT, "--mirror-traffic",
                                   f"shadow={50 if arm == 'on' else 0}")
                    else:
                        daemon.cli("request-log", arm)
                        wait_until(lambda d=daemon: d.api("GET", "/request-log").json()["waiting"] == 0, 30,
                                   "the request log to write what it holds")
                    self._ab_run(name, arm, target)
        self._ab_log(name)

    def batching_arms(self) -> None:
        """The same deployment with dynamic batching on and off (batching_bench.py), each pair of runs on a
        fresh daemon, the arm switched by applying the other YAML (its instance replaced), the order of the
        arms alternated between pairs; wrk -c64 after a 1 s warm-up."""
        root, body = batching_bench.prepare(self.work / "batching")
        clients = batching_bench.CLIENTS
        self.batching = {"on": [], "off": []}
        for i in range(self.args.ab_pairs):
            with contextlib.ExitStack() as stack:
                daemon = Daemon(f"ab{i}-batching", self.work, self.pin, exe=self.args.appliance).start()
                stack.callback(daemon.stop)
                for arm in ("on", "off") if i % 2 == 0 else ("off", "on"):
                    daemon.cli("apply", "-f", "endpoint.yml", "-f", f"{arm}.yml", cwd=root)
                    target = daemon.target(f"batching-{arm}", batching_bench.ENDPOINT, body)
                    script = wrk_script(target, self.work)
                    run_wrk(self.wrk, target, script, clients, 1, self.pin)
                    with Noise(_processes(target)) as noise:
                        r = run_wrk(self.wrk, target, script, clients, max(3.0, self.args.duration / 2), self.pin)
                    [instance] = daemon.api("GET", f"/endpoints/{batching_bench.ENDPOINT}/deployments/main").json()[
                        "instances"]
                    counts = instance.get("batching") or {}
                    r["requests_per_call"] = round(counts["requests"] / counts["calls"], 2) if counts.get("calls") \
                        else None
                    r["batch_ms"] = counts.get("batch_ms")
                    r["server_cpu_us_per_request"] = round(sum(noise.server_cpu.values()) * 1e6 / max(r["ok"], 1), 1)
                    self.batching[arm].append(r)
                    self.log(f"    batching {arm}: {r['requests_per_s']:,.0f} req/s, p50 "
                             f"{r['latency_ms']['p50']:.2f} ms, p99 {r['latency_ms']['p99']:.2f} ms, errors "
                             f"{r['errors']}" + (f"; {r['requests_per_call']} requests per call, a batch "
                                                 f"{r['batch_ms']} ms" if arm == "on" else ""))

    def _tui(self, daemon: Daemon, on: bool, stack: contextlib.ExitStack) -> None:
        """`appliance tui` in a real terminal (tmux, 120×40), attached to `daemon` and polling its endpoints
        view, on the server's cores as a user's would be; or none."""
        session = f"bench-tui-{daemon.port}"
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
        if not on:
            return
        command = " ".join([*self.pin.server(), self.args.appliance, "tui", "--url", daemon.url,
                            "--home", str(daemon.home)])
        subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "120", "-y", "40", command], check=True)
        stack.callback(lambda: subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True))

        def showing() -> bool:
            shown = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True)
            return "REQ/S" in shown.stdout

        wait_until(showing, 30, "the terminal UI's endpoints view")

    def _scraper(self, daemon: Daemon, on: bool, stack: contextlib.ExitStack) -> None:
        """A thread here scraping `daemon`'s GET /metrics once a second, as Prometheus would (one kept-alive
        connection, the admin token), while the arm runs; off: the previous arm's scraper stopped."""
        if self._scraping is not None:
            self._scraping.set()
            self._scraping = None
        if not on:
            return
        stop = self._scraping = threading.Event()
        headers = daemon.admin
        took: list[float] = []

        def scrape() -> None:
            with httpx.Client(base_url=daemon.url, headers=headers, timeout=10) as client:
                while not stop.is_set():
                    started = time.perf_counter()
                    answer = client.get("/metrics")
                    took.append(time.perf_counter() - started)
                    answer.raise_for_status()
                    stop.wait(max(0.0, 1.0 - (time.perf_counter() - started)))

        thread = threading.Thread(target=scrape, name="metrics-scraper", daemon=True)
        thread.start()

        def finish() -> None:
            stop.set()
            thread.join(15)
            if took:
                self.log(f"    /metrics scraped {len(took)} times, median {statistics.median(took) * 1000:.1f} ms "
                         f"(max {max(took) * 1000:.1f} ms)")

        stack.callback(finish)
        wait_until(lambda: bool(took), 15, "the first /metrics scrape")

    def _ab_daemon(self, label: str, project: Project, files: list[str],
                   stack: contextlib.ExitStack) -> tuple[Daemon, Target]:
        daemon = Daemon(label, self.work, self.pin, exe=self.args.appliance).start()
        stack.callback(daemon.stop)
        daemon.cli("apply", *[x for f in files for x in ("-f", f)], cwd=project.root)
        if "shadow-process.yml" in files:  # the mirror target's worker off the daemon's core
            [instance] = daemon.api("GET", f"/endpoints/{ENDPOINT}/deployments/shadow").json()["instances"]
            subprocess.run(["taskset", "-apc", str(self.apart_cpu), str(instance["pid"])], check=True,
                           capture_output=True)
        return daemon, daemon.target(f"b-{label}", ENDPOINT)

    @property
    def apart_cpu(self) -> int:
        """A core of its own for the mirror target where there are three; else the load generator's."""
        return 2 if (os.cpu_count() or 1) >= 3 else 0

    def _ab_run(self, name: str, arm: str, target: Target) -> None:
        """One short c16 run after a 1 s warm-up: its req/s, and the servers' CPU per request (the same
        cost seen without the machine's drift in throughput)."""
        script = wrk_script(target, self.work)
        run_wrk(self.wrk, target, script, self.args.connections, 1, self.pin)
        with Noise(_processes(target)) as noise:
            r = run_wrk(self.wrk, target, script, self.args.connections, max(3.0, self.args.duration / 2), self.pin)
        self.ab.setdefault(name, {}).setdefault(arm, []).append(r["requests_per_s"])
        self.ab_cpu.setdefault(name, {}).setdefault(arm, []).append(
            sum(noise.server_cpu.values()) * 1e6 / max(r["ok"], 1))

    def _ab_log(self, name: str) -> None:
        results, cpu = self.ab[name], self.ab_cpu[name]
        self.log(f"    A/B {name}: " + "; ".join(f"{arm} {statistics.median(v):,.0f} req/s "
                                                  f"({', '.join(f'{x:,.0f}' for x in v)}), "
                                                  f"{statistics.median(cpu[arm]):.0f} µs CPU/request"
                                                  for arm, v in results.items()))

    # -- profiling (optional) ---------------------------------------------------------------------

    def profile(self, target: Target, deployment: str) -> None:
        """py-spy on the daemon and `deployment`'s worker under the scenario's c16 load."""
        py_spy = ensure_py_spy(self.log)
        out = Path(self.args.profile).resolve()
        out.mkdir(parents=True, exist_ok=True)
        seconds = max(5, round(self.args.duration))
        recorders = []
        for role, pid in target.pids.items():
            if role != "daemon" and not role.startswith(deployment):
                continue
            for fmt, ext in (("raw", "txt"), ("speedscope", "json")):
                path = out / f"{role}.{fmt}.{ext}"
                cmd = [*self.pin.client(), py_spy, "record", "--pid", str(pid), "--duration", str(seconds),
                       "--rate", "250", "--format", fmt, "-o", str(path)]
                # --native needs to stop the process for each sample: it slows the server it profiles.
                cmd += ["--native"] if fmt == "raw" and self.args.profile_native else ["--nonblocking"]
                recorders.append((path, subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)))
        script = wrk_script(target, self.work)
        time.sleep(0.5)
        load = run_wrk(self.wrk, target, script, self.args.connections, seconds, self.pin)
        for path, r in recorders:
            _, err = r.communicate(timeout=seconds + 60)
            if r.returncode != 0 or not path.exists():
                self.log(f"py-spy did not write {path.name}: {err.decode(errors='replace').strip()[-300:]}")
        self.profiles[deployment] = {"folder": str(out), "seconds": seconds, "load_requests": load["ok"],
                         "load_requests_per_s": load["requests_per_s"]}
        self.log(f"profiles in {out} ({load['ok']} requests under py-spy, {load['requests_per_s']:,.0f} req/s)")

    # -- apply → first 200, hot reload ------------------------------------------------------------

    def apply_time(self, project: Project, stack: contextlib.ExitStack) -> dict[str, Any]:
        watch = _has_watch(self.args.appliance)
        started = time.perf_counter()
        daemon = Daemon("apply", self.work, self.pin, watch=watch, exe=self.args.appliance).start()
        stack.callback(daemon.stop)
        self.daemon_apply = daemon
        result: dict[str, Any] = {"daemon_start_s": round(time.perf_counter() - started, 3), "trials": [],
                                  "script_trials": []}
        # A no-code ONNX deployment, then the same model behind the benchmark's score.py (its environment
        # is the daemon's own: built already, as issue 24 asks), each on an endpoint of its own.
        for kind, script in (("trials", False), ("script_trials", True)):
            for i in range(1, self.args.apply_trials + 1):
                name = f"apply-{'script' if script else 'ep'}-{i}"
                (project.root / f"{name}.yml").write_text(endpoint_yaml(name))
                (project.root / f"{name}-blue.yml").write_text(deployment_yaml("blue", name, script=script))
                result[kind].append(self._apply_trial(daemon, project, name))
        return result

    def _apply_trial(self, daemon: Daemon, project: Project, name: str) -> dict[str, Any]:
        """`appliance apply` of an endpoint and its deployment: when the CLI returned, and the first 200."""
        t0 = time.perf_counter()
        try:
            daemon.cli("apply", "-f", f"{name}.yml", "-f", f"{name}-blue.yml", cwd=project.root)
        except RuntimeError as exc:
            return {"endpoint": name, "error": str(exc)[-500:]}
        applied = time.perf_counter() - t0
        headers = {"authorization": f"Bearer {daemon.key(name)}", "content-type": "application/json"}
        url = f"{daemon.url}/endpoints/{name}/score"
        try:
            wait_until(lambda: _post(url, headers)[0] == 200, 30, f"the first 200 from {name}", poll=0.005)
            first: float | None = time.perf_counter() - t0
        except RuntimeError:
            first = None
        self.log(f"apply {name}: CLI returned after {applied:.2f} s, first 200 after "
                 f"{'-' if first is None else f'{first:.2f}'} s")
        return {"endpoint": name, "apply_cli_s": round(applied, 3),
                "first_200_s": None if first is None else round(first, 3)}

    def hot_reload(self, project: Project, stack: contextlib.ExitStack) -> dict[str, Any]:
        if not _has_watch(self.args.appliance):
            return {"available": False, "reason": "`appliance up --watch` does not exist in this build"}
        daemon = self.daemon_apply
        if daemon is None:
            return {"available": True, "error": "the apply daemon did not start"}
        code = project.root / "reload-code"
        code.mkdir(exist_ok=True)
        script = code / "score.py"
        script.write_text(_reload_script("v0"))
        (project.root / "reload-ep.yml").write_text(endpoint_yaml("reload-ep"))
        (project.root / "reload-main.yml").write_text(
            deployment_yaml("main", "reload-ep").replace("instance_count: 1\n", "instance_count: 1\n"
                                                         "code_configuration:\n  code: ./reload-code/\n"
                                                         "  scoring_script: score.py\n"))
        daemon.cli("apply", "-f", "reload-ep.yml", "-f", "reload-main.yml", cwd=project.root)
        headers = {"authorization": f"Bearer {daemon.key('reload-ep')}", "content-type": "application/json"}
        url = f"{daemon.url}/endpoints/reload-ep/score"
        wait_until(lambda: _post(url, headers)[0] == 200, 60, "the hot-reload deployment")
        result: dict[str, Any] = {"available": True, "trials": []}
        for i in range(1, self.args.apply_trials + 1):
            mark = f"v{i}"
            time.sleep(0.3)  # let the watcher settle after the previous swap
            t0 = time.perf_counter()
            script.write_text(_reload_script(mark))
            non_200, seconds = 0, None
            while time.perf_counter() - t0 < 30:
                status, body = _post(url, headers)
                if status != 200:
                    non_200 += 1
                elif f'"{mark}"'.encode() in body:
                    seconds = time.perf_counter() - t0
                    break
                time.sleep(0.005)
            result["trials"].append({"mark": mark, "seconds": None if seconds is None else round(seconds, 3),
                                     "non_200": non_200})
            self.log(f"hot reload to {mark}: {'-' if seconds is None else f'{seconds:.2f}'} s, {non_200} non-200")
        return result

    # -- start-up of a CLI command ------------------------------------------------------------------

    def startup(self, stack: contextlib.ExitStack) -> dict[str, Any]:
        """Wall time of a fresh CLI process, median of --startup-runs (after one unmeasured run): `endpoint
        list -o json` against a running daemon (the apply timings' one, if any) and `--help`; the same for
        the one-file build when it exists (--onefile); and a peer: a kubectl client command without a cluster."""
        daemon = self.daemon_apply
        if daemon is None:
            daemon = Daemon("startup", self.work, self.pin, exe=self.args.appliance).start()
            stack.callback(daemon.stop)
        runs = self.args.startup_runs
        result: dict[str, Any] = {"runs": runs, "target_ms": report.STARTUP_MS}
        commands = {"endpoint_list": [self.args.appliance, "endpoint", "list", "-o", "json"],
                    "help": [self.args.appliance, "--help"]}
        if self.args.onefile and Path(self.args.onefile).exists():
            commands["onefile_endpoint_list"] = [self.args.onefile, "endpoint", "list", "-o", "json"]
            commands["onefile_help"] = [self.args.onefile, "--help"]
        kubectl = shutil.which("kubectl")
        if kubectl:  # `kubectl get --raw /` needs a cluster, and none runs here: the client alone
            commands["peer"] = [kubectl, "version", "--client", "-o", "json"]
        for key, cmd in commands.items():
            result[key] = _wall_times(cmd, daemon.env, runs)
            if key == "peer":
                result[key]["command"] = "kubectl version --client"
            shown = result[key].get("error") or f"median {result[key]['median_ms']:.0f} ms"
            self.log(f"start-up {key}: {shown} ({runs} runs)")
        return result

    # -- the document -----------------------------------------------------------------------------

    def document(self, apply: dict[str, Any] | None, reload: dict[str, Any] | None,
                 startup: dict[str, Any] | None = None) -> dict[str, Any]:
        scenarios = {k: _median_of(self.runs[k]) for k in ORDER if k in self.runs}
        return {
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "appliance": {"exe": self.args.appliance, "code": self.code},
            "machine": {"cpus": os.cpu_count(), "cpu": _cpu_model(), "python": platform.python_version(),
                        "onnxruntime": onnxruntime_version(), "wrk": _wrk_version(self.wrk) if self.wrk else None,
                        "pinning": self.pin.describe(), "pin_mode": self.pin.mode},
            "settings": {"duration_s": self.args.duration, "warmup_s": self.args.warmup,
                         "connections": self.args.connections, "rounds": self.args.rounds,
                         "open_loop_fraction": self.args.open_loop_fraction,
                         "open_loop_max_rate": self.args.open_loop_max_rate,
                         "body": BODY.decode(), "request_settings": self.args.request_settings or "Azure defaults",
                         "work": str(self.work)},
            "scenarios": scenarios,
            "apply": apply,
            "hot_reload": reload,
            "startup": startup,
            "profiles": self.profiles or None,
            "alternated": self.ab or None,
            "alternated_cpu_us_per_request": self.ab_cpu or None,
            "batch": self.batch,
            "drift": self.drift,
            "batching": self.batching,
            "targets": report.targets(scenarios, apply, reload, self.ab, self.ab_cpu, startup, self.batch,
                                      self.drift, self.batching),
        }


def _wall_times(cmd: list[str], env: dict[str, str], runs: int) -> dict[str, Any]:
    """Wall milliseconds of `cmd` run `runs` times (one more first, unmeasured: cold caches aside)."""
    times = []
    for i in range(runs + 1):
        t0 = time.perf_counter()
        done = subprocess.run(cmd, env=env, capture_output=True, timeout=60, cwd=ROOT_DIR)
        elapsed = (time.perf_counter() - t0) * 1000
        if done.returncode != 0:
            return {"error": f"{' '.join(cmd)} exited {done.returncode}: {done.stderr.decode(errors='replace')}"}
        if i:
            times.append(elapsed)
    return {"runs": runs, "median_ms": round(statistics.median(times), 1), "min_ms": round(min(times), 1),
            "max_ms": round(max(times), 1)}


def _median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One scenario over several rounds: every number is the median of its rounds (each number on its
    own), the rest from the first round; the rounds themselves are kept under "rounds"."""
    if len(runs) == 1:
        return runs[0]

    def merge(values: list[Any]) -> Any:
        first = values[0]
        if isinstance(first, bool) or not isinstance(first, int | float | dict):
            return first
        if isinstance(first, dict):
            return {k: merge([v.get(k) for v in values if isinstance(v, dict)]) for k in first}
        numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        return statistics.median(numbers) if numbers else None

    merged = merge(runs)
    for run in report.RUNS:  # errors add up: one in any round counts
        if run not in merged:
            continue
        merged[run]["errors"] = sum(r[run]["errors"] for r in runs)
        kinds: dict[str, int] = {}
        for r in runs:
            for kind, n in r[run].get("error_kinds", {}).items():
                kinds[kind] = kinds.get(kind, 0) + n
        merged[run]["error_kinds"] = kinds
    merged["saturated_rounds"] = sum(bool(r["open_loop"].get("saturated")) for r in runs)
    merged["open_loop"]["saturated"] = merged["saturated_rounds"] > len(runs) // 2
    merged["rounds"] = runs
    return merged


def _cpu(p: psutil.Process) -> float:
    try:
        t = p.cpu_times()
        return t.user + t.system
    except psutil.NoSuchProcess:
        return 0.0


def _processes(target: Target) -> dict[str, psutil.Process]:
    return {role: psutil.Process(pid) for role, pid in target.pids.items() if psutil.pid_exists(pid)}


class Noise:
    """CPU seconds used during a run by the servers (per process), by this harness's children (the
    load generator) and by everything else on the machine (`other_cores`: other tenants, tests...)."""

    def __init__(self, servers: dict[str, psutil.Process]) -> None:
        self.servers = servers
        self.server_cpu: dict[str, float] = {}
        self.other_cores = 0.0

    def __enter__(self) -> Noise:
        self._wall = time.perf_counter()
        self._machine = _busy(psutil.cpu_times())
        self._children = _children_cpu()
        self._server = {role: _cpu(p) for role, p in self.servers.items()}
        return self

    def __exit__(self, *exc: object) -> None:
        wall = max(time.perf_counter() - self._wall, 1e-9)
        self.server_cpu = {role: _cpu(p) - self._server[role] for role, p in self.servers.items()}
        ours = sum(self.server_cpu.values()) + _children_cpu() - self._children
        busy = _busy(psutil.cpu_times()) - self._machine
        self.other_cores = round(max(busy - ours, 0.0) / wall, 3)


def _busy(t: Any) -> float:
    return t.user + t.system + getattr(t, "nice", 0.0) + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _post(url: str, headers: dict[str, str]) -> tuple[int, bytes]:
    try:
        r = httpx.post(url, content=BODY, headers=headers, timeout=5)
        return r.status_code, r.content
    except httpx.TransportError:
        return 0, b""


def _reload_script(mark: str) -> str:
    return SCORE_PY.replace('MARK = "v1"', f'MARK = "{mark}"').replace(
        "return {name: value.tolist() for name, value in zip(output_names, results)}",
        'return {"mark": MARK, **{name: value.tolist() for name, value in zip(output_names, results)}}')


def _has_watch(exe: str) -> bool:
    result = subprocess.run([exe, "up", "--help"], capture_output=True, text=True, timeout=60)
    return "--watch" in result.stdout


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def _wrk_version(wrk: str) -> str:
    result = subprocess.run([wrk, "--version"], capture_output=True, text=True)
    return (result.stdout or result.stderr).splitlines()[0] if (result.stdout or result.stderr) else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark the appliance against azmlinfsrv and a floor.",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of wrk before each scenario")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections for the throughput run")
    parser.add_argument("--open-loop-fraction", type=float, default=0.5,
                        help="open-loop rate as a share of each server's wrk req/s")
    parser.add_argument("--open-loop-max-rate", type=float, default=4000,
                        help="cap on the open-loop rate: past it the Python generator itself adds latency")
    parser.add_argument("--pin", choices=["split", "client", "none"], default="split",
                        help="split: client on CPU 0, servers on CPU 1; client: only the client pinned")
    parser.add_argument("--only", nargs="+", choices=[*ORDER, "batch", "drift", "tui", "prometheus", "collect",
                                                       "batching", "mirror-apart"],
                        help="run only these scenarios (batch: the batch jobs' targets, batch_bench.py; drift: "
                             "drift_bench.py)")
    parser.add_argument("--batch-runs", type=int, default=3,
                        help="batch: alternated runs of each arm (and of the score.py job); medians")
    parser.add_argument("--drift-runs", type=int, default=5, help="drift: reports timed (API and CLI); medians")
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat every scenario this many times; the table shows medians (noisy machines)")
    parser.add_argument("--ab-pairs", type=int, default=15, choices=range(1, 41), metavar="1..40",
                        help="alternated pairs of c16 runs for the request-log and mirror costs (on a "
                             "noisy machine a pair's own ratio varies by ±10%%: fewer pairs decide little; "
                             "15 give a 96%% interval from the 4th to the 12th)")
    parser.add_argument("--skip-apply", action="store_true", help="skip the apply and hot-reload timings")
    parser.add_argument("--apply-trials", type=int, default=3, help="applies (and hot reloads) to time")
    parser.add_argument("--request-settings", default="",
                        help="YAML lines for the deployments' request_settings, e.g. "
                             "'  max_concurrent_requests_per_instance: 16\\n'; empty: Azure's defaults")
    parser.add_argument("--profile", metavar="DIR", help="also record py-spy profiles of the daemon and the blue "
                                                          "worker under the load of (b) and (c) into DIR")
    parser.add_argument("--profile-native", action="store_true", help="py-spy --native for the raw profiles")
    parser.add_argument("--appliance", default=APPLIANCE, metavar="EXE",
                        help="the `appliance` executable to benchmark (A/B of a patched build)")
    parser.add_argument("--startup-runs", type=int, default=15, help="runs of each CLI command timed for start-up")
    parser.add_argument("--skip-startup", action="store_true", help="skip the CLI start-up timings")
    parser.add_argument("--startup-only", action="store_true", help="only the CLI start-up timings (no load)")
    parser.add_argument("--onefile", default=str(ROOT_DIR / "dist" / "appliance"), metavar="EXE",
                        help="the one-file build, timed too when it exists (scripts/build-onefile.sh)")
    parser.add_argument("--work", help="work folder (default: a new temporary one, removed unless --keep)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, homes, YAML)")
    parser.add_argument("--out", default="bench-results.json", help="where to write the JSON results")
    parser.add_argument("--report", nargs="+", metavar="RESULTS", help="run nothing: print the tables of saved "
                        "results; several files (runs of the same code on the same machine) have their costs "
                        "judged over all their alternated pairs")
    args = parser.parse_args(argv)
    console = Console(width=max(shutil.get_terminal_size((200, 40)).columns, 200), stderr=False)
    if args.report:
        try:
            doc = report.pooled({name: json.loads(Path(name).read_text()) for name in args.report})
        except (OSError, ValueError) as exc:  # unreadable, not JSON, or not to be pooled
            console.print(f"[red]{exc}[/red]", highlight=False)
            return 2
        report.print_all(console, doc)
        return 0
    args.request_settings = args.request_settings.replace("\\n", "\n")
    args.appliance = str(Path(shutil.which(args.appliance) or args.appliance).resolve())

    bench = Bench(args, console)
    console.print(f"[bold]appliance benchmark[/bold] of {bench.code} — {bench.pin.describe()}")
    try:
        doc = bench.run()
    finally:
        if not args.keep and not args.work:
            shutil.rmtree(bench.work, ignore_errors=True)
    out = Path(args.out)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    report.print_all(console, doc)
    console.print(f"results: {out.resolve()}" + (f"; work folder kept: {bench.work}" if args.keep else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
