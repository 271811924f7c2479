"""The drift scenario (`--only drift`): issue 23's "10 million collected rows report in seconds".

Data: what Azure's data collector (appliance/scoring/collect.py) leaves after a day of steady traffic
to one deployment, in its exact layout: `data-collector/endpoint=E/deployment=D/collection=C/
hour=YYYY-MM-DDTHH/part-<ms>-<pid>-<seq>.parquet`, one file per collection per 2 s flush (FLUSH_EVERY)
as the writer makes them at that rate, so 43,200 files per collection over 24 hour folders; columns
correlation_id (string), timestamp (timestamp[us]), then the features, written with the score.py
path's settings (dictionaries on), the one that collects strings.
- model_inputs: 10,000,000 rows (≈116 requests/s sampled at 1.0): features_0..features_15 float32
  (normal, each its own mean and spread) and two categorical strings, `region` (5 values) and `device`
  (3); in the last hour features_3 moves by half its standard deviation and `device`'s mix changes.
- model_outputs: 1,000,000 rows (sampling_rate 0.1, the same requests' outputs): `label` int64 and
  `probability` float32, from features that do not shift: no prediction drift.
No rows in the first GAP seconds of an hour: the window's start (the daemon's `now` minus `window`,
chosen by the harness a moment before, a CLI's start-up before for the CLI) falls in that gap.

Measured: `GET /api/v1/endpoints/E/drift?baseline_window=23h&window=…` on a real daemon, the window
reaching back to the start of the data's last hour (the data were made once and keep their times; a
window up to now reads no more files), so ≈10M rows are aggregated (the last hour against the 23 before);
--drift-runs runs, the median against the target, the first (caches cold) shown apart; `appliance
monitor drift -o json` (a fresh CLI process, the same request) timed beside it. The report must flag
exactly the two shifted features. The data end an hour before the current one, so that every hour is
over: the daemon compacts them all (collected.compact) before the first report, and the time it took
is reported. Made once per work folder (--work keeps them), again once older than six days (the
daemon prunes collected hours past the request log's 7-day retention).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from servers import Daemon, Pinning, wait_until

ENDPOINT, DEPLOYMENT = "bench-drift", "blue"
HOURS = 24
INPUT_ROWS = 10_000_000
OUTPUT_RATE = 0.1  # model_outputs' sampling rate: 1,000,000 rows
FLUSH_EVERY = 2  # s, the collector's
GAP = 2.0  # s
FEATURES = 16
SHIFTED = ("features_3", "device")
REGIONS = ("eu-west", "eu-north", "us-east", "us-west", "asia-east")
DEVICES = ("mobile", "desktop", "tablet")
TARGET_SECONDS = 10.0
STALE = timedelta(days=6)
SCHEMA = "https://azuremlschemas.azureedge.net/latest"

Log = Callable[[str], None]


# -- data ---------------------------------------------------------------------------------------

def prepare(home: Path, log: Log) -> dict[str, Any]:
    """The collected data under `home` (made unless a marker says they are there and fresh): the marker's
    {end: the end of the data's last hour (naive UTC, ISO), rows, files}."""
    marker = home / "drift-data.json"
    if marker.exists():
        found = json.loads(marker.read_text())
        if datetime.now(UTC).replace(tzinfo=None) - datetime.fromisoformat(found["end"]) < STALE:
            return dict(found)
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    started = time.perf_counter()
    base = home / "data-collector" / f"endpoint={ENDPOINT}"
    shutil.rmtree(base, ignore_errors=True)
    marker.unlink(missing_ok=True)
    rng = np.random.default_rng(20250123)
    # Ending an hour before the current one: every hour is over, and compacted once the daemon starts.
    end = datetime.now(UTC).replace(tzinfo=None, minute=0, second=0, microsecond=0) - timedelta(hours=1)
    means = rng.uniform(-5, 5, FEATURES)
    spreads = rng.uniform(0.5, 3, FEATURES)
    hex_digits = np.frombuffer(b"0123456789abcdef", np.uint8)
    dashes = [8, 13, 18, 23]
    files = {"model_inputs": 0, "model_outputs": 0}
    rows = {"model_inputs": 0, "model_outputs": 0}
    seq = 0
    per_hour = np.full(HOURS, INPUT_ROWS // HOURS)
    per_hour[: INPUT_ROWS % HOURS] += 1
    for h in range(HOURS):
        hour = end - timedelta(hours=HOURS - h)
        last = h == HOURS - 1
        n = int(per_hour[h])
        offsets = np.sort(rng.uniform(GAP, 3600, n))  # seconds into the hour; a flush writes its 2 s
        stamps = (np.datetime64(hour, "us") + (offsets * 1e6).astype("timedelta64[us]"))
        digits = hex_digits[rng.integers(0, 16, (n, 36))]
        digits[:, dashes] = ord("-")
        ids = pa.array(digits.view("S36").ravel()).cast(pa.string())  # uuid-shaped, as the router's request ids
        x = rng.normal(means, spreads, (n, FEATURES)).astype(np.float32)
        device_mix = [0.6, 0.3, 0.1]
        if last:
            x[:, 3] += 0.5 * spreads[3]
            device_mix = [0.35, 0.5, 0.15]
        inputs = pa.table({"correlation_id": ids, "timestamp": pa.array(stamps),
                           **{f"features_{j}": x[:, j] for j in range(FEATURES)},
                           "region": pa.array(np.array(REGIONS)[rng.choice(len(REGIONS), n)]),
                           "device": pa.array(np.array(DEVICES)[rng.choice(len(DEVICES), n, p=device_mix)])})
        kept = rng.random(n) < OUTPUT_RATE
        score = 1 / (1 + np.exp(-(x[kept, 0] - means[0]) / spreads[0] - (x[kept, 1] - means[1]) / spreads[1]))
        outputs = pa.table({"correlation_id": ids.filter(pa.array(kept)), "timestamp": pa.array(stamps[kept]),
                            "label": (score > 0.5).astype(np.int64), "probability": score.astype(np.float32)})
        flush = (offsets // FLUSH_EVERY).astype(np.int64)
        for collection, table, which in (("model_inputs", inputs, flush), ("model_outputs", outputs, flush[kept])):
            folder = base / f"deployment={DEPLOYMENT}" / f"collection={collection}" / f"hour={hour:%Y-%m-%dT%H}"
            folder.mkdir(parents=True, exist_ok=True)
            bounds = np.searchsorted(which, np.arange(0, 3600 // FLUSH_EVERY + 1))
            for k in range(len(bounds) - 1):
                if bounds[k + 1] == bounds[k]:
                    continue
                seq += 1
                written = hour + timedelta(seconds=(k + 1) * FLUSH_EVERY)
                name = f"part-{int(written.replace(tzinfo=UTC).timestamp() * 1000)}-{os.getpid()}-{seq}.parquet"
                pq.write_table(table.slice(bounds[k], bounds[k + 1] - bounds[k]), folder / name)
                files[collection] += 1
            rows[collection] += table.num_rows
        if (h + 1) % 6 == 0:
            log(f"    drift data: {h + 1} of {HOURS} hours written ({time.perf_counter() - started:.0f} s)")
    found = {"end": end.isoformat(), "rows": rows, "files": files,
             "bytes": sum(p.stat().st_size for p in base.rglob("*.parquet"))}
    marker.write_text(json.dumps(found) + "\n")
    log(f"drift data made in {time.perf_counter() - started:.1f} s: {rows['model_inputs']:,} input rows and "
        f"{rows['model_outputs']:,} output rows in {sum(files.values()):,} Parquet files "
        f"({found['bytes'] / 1e6:,.0f} MB)")
    return found


def _documents() -> list[dict[str, Any]]:
    return [{"body": {"$schema": f"{SCHEMA}/managedOnlineEndpoint.schema.json", "name": ENDPOINT, "auth_mode": "key"},
             "source": "drift-bench.yml"}]


def _window(end: datetime) -> float:
    """Seconds from a second into the data's last hour to now: the window's start falls in its gap."""
    return (datetime.now(UTC).replace(tzinfo=None) - (end - timedelta(hours=1))).total_seconds() - GAP / 2


def _compacted(home: Path) -> tuple[int, int]:
    """(hour folders, those with a compacted file)."""
    hours = list((home / "data-collector").glob("endpoint=*/deployment=*/collection=*/hour=*"))
    return len(hours), sum(1 for h in hours if any(h.glob("compacted-*.parquet")))


def _check(report: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """The report flags exactly the shifted features, over the rows the data hold for each side."""
    rows = {c["collection"]: (c["features"][0]["baseline"]["rows"], c["features"][0]["target"]["rows"])
            for c in report["collections"]}
    per_hour = data["rows"]["model_inputs"] / HOURS
    wanted = sorted(f"model_inputs.{f}" for f in SHIFTED)
    return {"drifted": report["drifted"], "rows": rows,
            "ok": sorted(report["drifted"]) == wanted and sum(rows.get("model_inputs", (0, 0))) == INPUT_ROWS
            and abs(rows["model_inputs"][1] - per_hour) <= 1}


def measure(work: Path, log: Log, exe: str, runs: int) -> dict[str, Any]:
    daemon = Daemon("drift", work, Pinning("none"), exe=exe)
    data = prepare(daemon.home, log)
    end = datetime.fromisoformat(data["end"])
    result: dict[str, Any] = {"data": data, "runs": runs, "machine_cpus": os.cpu_count(),
                              "pinning": "none: the daemon on all cores"}
    t0 = time.perf_counter()
    daemon.start()
    try:
        log(f"drift: daemon on {daemon.url} (pid {daemon.proc.pid if daemon.proc else '?'}); waiting for it to "
            "compact the finished hours")
        answer = daemon.api("POST", "/apply", json={"documents": _documents()})
        if answer.status_code != 200:
            raise RuntimeError(f"apply of {ENDPOINT} answered {answer.status_code}: {answer.text}")
        wait_until(lambda: (lambda n: n[0] and n[0] == n[1])(_compacted(daemon.home)), 900,
                   "the daemon to compact the collected hours", poll=1.0)
        result["compacted_after_start_s"] = round(time.perf_counter() - t0, 1)
        log(f"    compacted {_compacted(daemon.home)[1]} hour folders, {result['compacted_after_start_s']} s "
            "after the daemon's start")
        api: list[dict[str, Any]] = []
        cli: list[float] = []
        for i in range(runs):
            window = _window(end)
            t = time.perf_counter()
            answer = daemon.api("GET", f"/endpoints/{ENDPOINT}/drift", timeout=900,
                                params={"baseline_window": 23 * 3600, "window": window})
            wall = time.perf_counter() - t
            if answer.status_code != 200:
                raise RuntimeError(f"GET drift answered {answer.status_code}: {answer.text[:2000]}")
            report = answer.json()
            api.append({"wall_s": wall, "report_s": report["seconds"], "check": _check(report, data)})
            t = time.perf_counter()
            done = daemon.cli("monitor", "drift", ENDPOINT, "--baseline-window", "23h",
                              "--window", f"{_window(end):.3f}", "-o", "json")
            cli.append(time.perf_counter() - t)
            check = _check(json.loads(done.stdout), data)
            log(f"    run {i + 1}: GET drift {wall:.2f} s (report {report['seconds']:.2f} s), "
                f"`appliance monitor drift` {cli[-1]:.2f} s; drifted {', '.join(report['drifted'])}"
                f"{'' if api[-1]['check']['ok'] and check['ok'] else ' — CHECK FAILED'}")
            api[-1]["cli_check_ok"] = check["ok"]
    finally:
        daemon.stop()
    walls = [r["wall_s"] for r in api]
    result.update(api=api, cli_wall_s=cli, median_s=statistics.median(walls), first_s=walls[0],
                  cli_median_s=statistics.median(cli),
                  rows=INPUT_ROWS + data["rows"]["model_outputs"],
                  check_ok=all(r["check"]["ok"] and r["cli_check_ok"] for r in api))
    result["rows_per_s"] = result["rows"] / result["median_s"]
    return result


def targets(drift: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Issue 23's row: a drift report over 10M collected rows, in seconds."""
    if not drift:
        return []
    ok = drift["median_s"] <= TARGET_SECONDS and drift["check_ok"]
    files = sum(drift["data"]["files"].values())
    note = (f"GET /endpoints/{ENDPOINT}/drift, last hour vs the 23 before: {INPUT_ROWS:,} input + "
            f"{drift['data']['rows']['model_outputs']:,} output rows collected as {files:,} files (a 2 s flush), "
            f"finished hours compacted by the daemon ({drift['compacted_after_start_s']} s after its start); "
            f"median of {drift['runs']} (first {drift['first_s']:.2f} s), {drift['rows_per_s']:,.0f} rows/s; "
            f"`appliance monitor drift -o json` {drift['cli_median_s']:.2f} s wall; "
            + ("flags exactly " + " and ".join(SHIFTED) if drift["check_ok"] else "WRONG FEATURES OR ROWS FLAGGED"))
    return [{"target": "drift report over 10M collected rows", "wanted": f"≤ {TARGET_SECONDS:.0f} s",
             "measured": f"{drift['median_s']:.2f} s", "result": "PASS" if ok else "FAIL", "note": note}]
