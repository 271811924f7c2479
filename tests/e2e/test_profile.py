"""`deployment profile` against a real daemon: a score.py whose run() sleeps 20 ms, one process instance
that takes one request at a time. Its measured curve must follow from that (about 1/0.02 req/s whatever
the concurrency; queueing raises p99 instead), the recommendation from the curve, and `show` and `export`
must carry it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from conftest import Daemon

SLEEPY = ("import time\n\ndef init():\n    pass\n\n"
          "def run(raw_data):\n    time.sleep(0.02)\n    return {'ok': True}\n")
MODEL_MS = 20.0


@pytest.fixture
def sleepy(tmp_path: Path) -> Daemon:
    # Export packages an image when Docker answers (minutes): pointed at no engine, it writes a placeholder.
    daemon = Daemon(tmp_path / "home", env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"}).start()
    project = tmp_path / "project"
    (project / "code").mkdir(parents=True)
    (project / "code" / "score.py").write_text(SLEEPY)
    (project / "endpoint.yml").write_text("name: my-ep\nauth_mode: key\n")
    (project / "blue.yml").write_text(
        "name: blue\nendpoint_name: my-ep\ncode_configuration:\n  code: ./code\n  scoring_script: score.py\n"
        "runtime: process\ninstance_type: Standard_DS3_v2\ninstance_count: 1\nrequest_settings:\n"
        "  max_concurrent_requests_per_instance: 1\n  max_queue_wait_ms: 5000\n  request_timeout_ms: 5000\n")
    (project / "request.json").write_text(json.dumps({"data": [1, 2, 3]}))
    daemon.cli("apply", "-f", "endpoint.yml", "-f", "blue.yml", cwd=project)
    yield daemon
    daemon.stop()


def test_profile_measures_a_20ms_model_and_sizes_it(sleepy: Daemon, tmp_path: Path) -> None:
    daemon = sleepy
    project = tmp_path / "project"
    done = daemon.cli("deployment", "profile", "my-ep", "blue", "--request-file", "request.json",
                      "--concurrency", "1,2,4", "--duration", "3s", "--target-rps", "120", "--target-p99", "100ms",
                      "-o", "json", cwd=project)
    result = json.loads(done.stdout)
    # Progress on stderr, one line per step as it ends; the result alone on stdout.
    assert "concurrency 1:" in done.stderr and "concurrency 4:" in done.stderr and "req/s" in done.stderr
    steps = {s["concurrency"]: s for s in result["steps"]}
    print("\nmeasured curve:")
    for s in result["steps"]:
        print(f"  c={s['concurrency']}: {s['rps']} req/s, p50 {s['p50_ms']} p95 {s['p95_ms']} p99 {s['p99_ms']} ms, "
              f"errors {s['errors']}, CPU {s['cpu_cores_per_instance']} cores, "
              f"RSS {s['rss_bytes_per_instance'] / 2**20:.0f} MiB")
    print("recommendation:", json.dumps(result["recommendation"], indent=1))
    assert sorted(steps) == [1, 2, 4]
    ceiling = 1000 / MODEL_MS  # one request at a time, 20 ms each
    for s in steps.values():
        assert s["errors"] == 0, s["statuses"]
        assert s["rps"] <= ceiling * 1.05, s  # at most one at a time: never past ~50 req/s
        assert s["p50_ms"] >= MODEL_MS * 0.95
        assert s["instances"][0]["pid"] and s["rss_bytes_per_instance"] > 10 * 2**20  # a real worker process
    assert ceiling * 0.7 <= steps[1]["rps"] <= ceiling * 1.05, steps[1]
    # More clients don't add throughput (within noise); they wait in the router's queue instead.
    assert steps[4]["rps"] <= steps[1]["rps"] * 1.15
    assert steps[4]["p50_ms"] > steps[1]["p50_ms"] * 2.5 and steps[4]["p99_ms"] > steps[1]["p99_ms"]
    assert result["runtime"] == "process" and not result["shared_process"]
    assert result["instance_count"] == 1 and result["max_concurrent_requests_per_instance"] == 1

    # The recommendation, computed here from the measured curve: the step with the most req/s within 100 ms.
    within = [s for s in result["steps"] if s["p99_ms"] <= 100]
    best = max(within, key=lambda s: (s["rps"], -s["concurrency"]))
    rec = result["recommendation"]
    assert rec["at_concurrency"] == best["concurrency"] and rec["meets_target_p99"]
    assert rec["instance_count"] == math.ceil(120 / best["rps"] - 1e-9)
    assert rec["instance_count"] >= 3  # 120 req/s at <= ~50 per instance
    assert rec["max_concurrent_requests_per_instance"] == 1
    cpu_m = max(1, math.ceil(best["cpu_cores_per_instance"] * 10 - 1e-9)) * 100
    mem_mi = max(1, math.ceil(best["rss_bytes_per_instance"] * 1.25 / 2**20 / 64 - 1e-9)) * 64
    assert (rec["cpu"], rec["memory"]) == (f"{cpu_m}m", f"{mem_mi}Mi")

    # Stored with the deployment: `show` carries it.
    shown = json.loads(daemon.cli("deployment", "show", "my-ep", "blue", "-o", "json").stdout)
    assert shown["profile"]["recommendation"] == rec and shown["profile"]["steps"] == result["steps"]

    # `export` sizes the container from it instead of the SKU table (Standard_DS3_v2: 4 CPUs, 14Gi).
    out = tmp_path / "k8s"
    exported = daemon.cli("export", "my-ep", "--out", str(out))
    assert "not in the SKU table" not in exported.stderr
    (manifest,) = [p for p in out.rglob("deployment.yaml") if "my-ep-blue" in str(p)]
    deployment = yaml.safe_load(manifest.read_text())
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["requests"] == {"cpu": rec["cpu"], "memory": rec["memory"]}
    assert container["resources"]["limits"] == {"memory": rec["memory"]}

    # A table for people; --no-store leaves the stored profile alone.
    table = daemon.cli("deployment", "profile", "my-ep", "blue", "--request-file", "request.json",
                       "--concurrency", "2", "--duration", "1s", "--no-store", cwd=project)
    assert "CONCURRENCY" in table.stdout and "P99_MS" in table.stdout and "instance_count" in table.stdout
    again = json.loads(daemon.cli("deployment", "show", "my-ep", "blue", "-o", "json").stdout)
    assert again["profile"]["at"] == result["at"]

    # Scaling out keeps it (it is per instance); a change to what runs drops it, and says so.
    daemon.cli("deployment", "update", "my-ep", "blue", "--set", "instance_count=2")
    assert json.loads(daemon.cli("deployment", "show", "my-ep", "blue", "-o", "json").stdout)["profile"]
    daemon.cli("deployment", "update", "my-ep", "blue", "--set",
               "request_settings.max_concurrent_requests_per_instance=2")
    changed = json.loads(daemon.cli("deployment", "show", "my-ep", "blue", "-o", "json").stdout)
    assert changed.get("profile") is None
    events = daemon.api("GET", "/events", params={"subject": "my-ep/blue"}).json()
    assert "deployment.profile_cleared" in [e["kind"] for e in events]


def test_profile_refusals(sleepy: Daemon, tmp_path: Path) -> None:
    project = tmp_path / "project"
    missing = sleepy.cli("deployment", "profile", "my-ep", "nope", "--request-file", "request.json",
                         "--duration", "1s", cwd=project, check=False)
    assert missing.returncode != 0 and "nope" in missing.stderr
    bad = sleepy.cli("deployment", "profile", "my-ep", "blue", "--request-file", "request.json",
                     "--concurrency", "1,x", cwd=project, check=False)
    assert bad.returncode == 2 and "--concurrency" in bad.stderr
    # A deleted deployment takes its profile with it.
    sleepy.cli("deployment", "profile", "my-ep", "blue", "--request-file", "request.json", "--concurrency", "1",
               "--duration", "0.5s", "-o", "none", cwd=project)
    assert sleepy.api("GET", "/endpoints/my-ep/deployments/blue").json()["profile"] is not None
