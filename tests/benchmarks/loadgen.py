"""The load: Debian's wrk (closed loop; a Lua script for the POST body, the headers and a JSON summary)
and openloop.py (open loop, latency from the scheduled send time), both run under the same pinning,
with the same body and headers for every server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from servers import BENCH, Pinning, Target

_LUA = """-- written by tests/benchmarks/loadgen.py
wrk.method = "POST"
wrk.body = [==[{body}]==]
wrk.headers["Content-Type"] = "application/json"
{headers}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {{"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50":%.1f,"p90":%.1f,"p99":%.1f,"p999":%.1f,"max":%.1f,"mean":%.2f}}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean))
end
"""


def wrk_script(target: Target, folder: Path) -> Path:
    headers = "\n".join(f'wrk.headers["{k.title()}"] = [==[{v}]==]' for k, v in target.headers.items())
    path = folder / f"wrk-{target.name}.lua"
    path.write_text(_LUA.format(body=target.body.decode(), headers=headers))
    return path


def run_wrk(wrk: str, target: Target, script: Path, connections: int, duration: float, pin: Pinning,
            timeout_s: int = 5) -> dict[str, Any]:
    seconds = max(1, round(duration))
    cmd = [*pin.client(), wrk, "-t1", f"-c{connections}", f"-d{seconds}s", f"--timeout={timeout_s}s",
           "-s", str(script), target.url]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    line = next((ln for ln in result.stdout.splitlines() if ln.startswith("BENCHJSON ")), None)
    if result.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({result.returncode}): {' '.join(cmd)}\n{result.stdout}\n{result.stderr}")
    raw = json.loads(line.removeprefix("BENCHJSON "))
    seconds_run = raw["duration_us"] / 1e6
    socket_errors = raw["connect"] + raw["read"] + raw["write"] + raw["timeout"]
    ok = raw["requests"] - raw["status"]
    return {
        "tool": "wrk", "connections": connections, "threads": 1, "duration_s": round(seconds_run, 3),
        "requests": raw["requests"], "ok": ok, "requests_per_s": round(ok / seconds_run, 1),
        "latency_ms": {"p50": raw["p50"] / 1000, "p90": raw["p90"] / 1000, "p99": raw["p99"] / 1000,
                       "p99.9": raw["p999"] / 1000, "max": raw["max"] / 1000, "mean": round(raw["mean"] / 1000, 4)},
        "errors": raw["status"] + socket_errors,
        "error_kinds": {k: raw[k] for k in ("connect", "read", "write", "timeout", "status") if raw[k]},
    }


def run_open_loop(target: Target, rate: float, duration: float, pin: Pinning) -> dict[str, Any]:
    cmd = [*pin.client(), sys.executable, str(BENCH / "openloop.py"), "--url", target.url, "--rate", f"{rate:.1f}",
           "--duration", str(duration), "--body", target.body.decode(), "--header", "Content-Type: application/json"]
    for k, v in target.headers.items():
        cmd += ["--header", f"{k.title()}: {v}"]
    if pin.spin:
        cmd.append("--spin")
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    if result.returncode != 0:
        raise RuntimeError(f"the open-loop generator failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])
