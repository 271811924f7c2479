"""Drift reports over collected data (DuckDB aggregation in registry.collected, statistics in drift),
and the upkeep of collected data: finished hours compacted into one file each (collected.compact), hour
folders older than the request log's retention deleted."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from appliance.registry import collected
from appliance.telemetry import drift

log = logging.getLogger("appliance.telemetry")
OUTPUTS = "model_outputs"


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def report(home: Path, endpoint: str, deployment: str | None = None, *, baseline_file: Path | None = None,
           baseline_window: float | None = None, window: float = 3600.0, features: list[str] | None = None,
           thresholds: drift.Thresholds | None = None, now: datetime | None = None,
           bins: int = drift.BINS) -> dict[str, Any]:
    """Per collection of the deployment(s) (model_inputs: data drift; model_outputs: prediction drift;
    any other a score.py collects), per feature in both the baseline and the window: Azure's metrics and
    verdicts. The baseline is a file, or the `baseline_window` seconds before the window."""
    if (baseline_file is None) == (baseline_window is None):
        raise ValueError("give a baseline file or a baseline window (one of them)")
    if window <= 0 or (baseline_window is not None and baseline_window <= 0):
        raise ValueError("windows must be positive")
    thresholds = (thresholds or drift.Thresholds()).check()
    end = now or _now()
    start = end - timedelta(seconds=window)
    started = time.perf_counter()
    base_file = collected.from_file(baseline_file) if baseline_file is not None else None
    reader = collected.Reader()
    out: list[dict[str, Any]] = []
    try:
        base_kinds = reader.columns(base_file) if base_file is not None else None
        for name in collected.collections(home, endpoint, deployment):
            target = collected.collected(home, endpoint, deployment, name, start, end)
            if target.empty:
                continue
            if base_file is not None:
                baseline, kinds_b = base_file, base_kinds or {}
            else:
                assert baseline_window is not None
                baseline = collected.collected(home, endpoint, deployment, name,
                                               start - timedelta(seconds=baseline_window), start)
                if baseline.empty:
                    continue
                kinds_b = reader.columns(baseline)
            kinds_t = reader.columns(target)
            common = [f for f in kinds_t if f in kinds_b and (features is None or f in features)]
            if not common:
                continue
            numeric = [f for f in common if kinds_t[f] == kinds_b[f] == "numeric"]
            categorical = [f for f in common if f not in numeric]
            side_b, side_t = reader.profile(baseline, target, numeric, categorical)
            if not (side_b.rows and side_t.rows):
                continue
            out.append({"collection": name,
                        "kind": "prediction drift" if name == OUTPUTS else "data drift",
                        "baseline": baseline.what, "target": target.what,
                        "features": _numeric(reader, baseline, target, side_b, side_t, numeric, thresholds, bins)
                        + _categorical(side_b, side_t, categorical, thresholds)})
    finally:
        reader.close()
    drifted = [f"{c['collection']}.{f['feature']}" for c in out for f in c["features"] if f["drift"]]
    return {"endpoint": endpoint, "deployment": deployment, "window": {"start": start.isoformat(),
            "end": end.isoformat(), "seconds": window},
            "baseline": str(baseline_file) if baseline_file else {"seconds": baseline_window},
            "thresholds": {"numeric": list(thresholds.numeric), "categorical": list(thresholds.categorical),
                           "null_rate": thresholds.null_rate, "out_of_range_rate": thresholds.out_of_range_rate},
            "collections": out, "drifted": drifted, "seconds": round(time.perf_counter() - started, 3)}


def _numeric(reader: collected.Reader, baseline: collected.Source, target: collected.Source,
             side_b: collected.Side, side_t: collected.Side, features: list[str], thresholds: drift.Thresholds,
             bins: int) -> list[dict[str, Any]]:
    if not features:
        return []
    stats_b, stats_t = side_b.numeric, side_t.numeric
    plan: collected.Plan = {}
    centers: dict[str, list[float]] = {}
    for f in features:
        lows = [v for v in (stats_b[f]["min"], stats_t[f]["min"]) if v is not None]
        highs = [v for v in (stats_b[f]["max"], stats_t[f]["max"]) if v is not None]
        low, high = (min(lows), max(highs)) if lows else (0.0, 0.0)
        begin, width, centers[f] = drift.numeric_bins(low, high, bins)
        b_low = stats_b[f]["min"] if stats_b[f]["min"] is not None else -float("inf")
        b_high = stats_b[f]["max"] if stats_b[f]["max"] is not None else float("inf")
        plan[f] = (begin, width, len(centers[f]), b_low, b_high)
    hist_b, hist_t = reader.histograms(baseline, target, plan)
    reports = []
    for f in features:
        sb, st = stats_b[f], stats_t[f]
        reports.append(drift.compare_numeric(
            f, centers[f],
            drift.Side(side_b.rows, sb["nulls"], hist_b[f][0], sb["min"], sb["max"], sb["std"]),
            drift.Side(side_t.rows, st["nulls"], hist_t[f][0], st["min"], st["max"], st["std"]),
            hist_t[f][1], thresholds))
    return reports


def _categorical(side_b: collected.Side, side_t: collected.Side, features: list[str],
                 thresholds: drift.Thresholds) -> list[dict[str, Any]]:
    return [drift.compare_categorical(f, side_b.categorical[f][0], side_b.categorical[f][1], side_b.rows,
                                      side_t.categorical[f][0], side_t.categorical[f][1], side_t.rows, thresholds)
            for f in features]


class Retention:
    """Every `every` seconds, off the event loop: compacts each hour's parts written since the last pass,
    and deletes the hours older than `retention` seconds (None: kept)."""

    def __init__(self, home: Path, retention: float | None, every: float = 300.0) -> None:
        self.home = home
        self.retention = retention
        self.every = min(every, retention / 4) if retention else every
        self.pruned = 0
        self.compacted = 0
        self._task: asyncio.Task[None] | None = None

    def prune(self, now: datetime | None = None) -> int:
        if self.retention is None:
            return 0
        removed = collected.prune(self.home, (now or _now()) - timedelta(seconds=self.retention))
        self.pruned += removed
        return removed

    def compact(self) -> int:
        made, _ = collected.compact(self.home)
        self.compacted += made
        return made

    async def _loop(self) -> None:
        while True:
            try:
                if removed := await asyncio.to_thread(self.prune):
                    log.info("data collector: removed %d hour(s) older than the retention", removed)
                if made := await asyncio.to_thread(self.compact):
                    log.info("data collector: compacted %d hour(s)", made)
            except Exception:
                log.exception("data collector: pruning or compacting failed")
            await asyncio.sleep(self.every)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
