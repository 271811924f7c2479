"""Model monitoring over the data collector's files: `GET /endpoints/{endpoint}/drift`, and scheduled
monitors (Azure's monitor schedules) under `/monitors`: create, list, show, delete, run now."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from litestar import Request, delete, get, post
from litestar.params import Parameter
from msgspec import Struct

from appliance.daemon import background
from appliance.daemon.api import _BAD, _BODY, _MISSING, _answers, _check_document, _control
from appliance.daemon.views import _utc
from appliance.registry.records import MonitorRecord, MonitorRun
from appliance.specs import SpecError
from appliance.specs.names import ASSET_NAME
from appliance.telemetry import drift, monitor, signals

MAX_WINDOW = 366 * 86400.0


@get("/endpoints/{endpoint:str}/drift", responses=_answers(_BAD, _MISSING))
async def drift_report(
        request: Request[Any, Any, Any], endpoint: str, deployment: str | None = None,
        baseline: Annotated[str | None, Parameter(description=(
            "A baseline file on the daemon's machine (absolute path): Parquet, CSV or JSON lines"))] = None,
        baseline_window: Annotated[float | None, Parameter(gt=0, le=MAX_WINDOW, description=(
            "Or: the collected data of this many seconds before the window is the baseline"))] = None,
        window: Annotated[float, Parameter(gt=0, le=MAX_WINDOW, description=(
            "Seconds of collected data, up to now, compared with the baseline"))] = 3600.0,
        features: Annotated[str | None, Parameter(max_length=10_000, description=(
            "Comma-separated feature (column) names; default: every column both sides have"))] = None,
        numeric_metric: str = drift.Thresholds.numeric[0], numeric_threshold: Annotated[
            float, Parameter(ge=0)] = drift.Thresholds.numeric[1],
        categorical_metric: str = drift.Thresholds.categorical[0], categorical_threshold: Annotated[
            float, Parameter(ge=0)] = drift.Thresholds.categorical[1],
        null_rate_threshold: Annotated[float, Parameter(ge=0)] = drift.Thresholds.null_rate,
        out_of_range_threshold: Annotated[float, Parameter(ge=0)] = drift.Thresholds.out_of_range_rate,
) -> dict[str, Any]:
    """Data drift (model_inputs), prediction drift (model_outputs) and data quality of the collected
    data in the last `window` seconds against a baseline: per feature Jensen-Shannon distance, population
    stability index, normalized Wasserstein distance (numeric) or Pearson's chi-squared test
    (categorical), null and out-of-range rates, each verdict against its threshold."""
    control = _control(request)
    await asyncio.to_thread(control.registry.get_endpoint, endpoint)  # 404 for an unknown endpoint
    if (baseline is None) == (baseline_window is None):
        raise SpecError("give either baseline (a file) or baseline_window (seconds)", field="baseline")
    path = None
    if baseline is not None:
        path = Path(baseline)
        if not path.is_absolute() or not path.exists():
            raise SpecError(f"baseline {baseline[:200]!r}: no such file here (an absolute path on the daemon's "
                            "machine is needed)", field="baseline")
    try:
        thresholds = drift.Thresholds((numeric_metric, numeric_threshold), (categorical_metric, categorical_threshold),
                                      null_rate_threshold, out_of_range_threshold).check()
    except ValueError as exc:
        raise SpecError(str(exc), field="numeric_metric" if "numeric" in str(exc)[:10] else "categorical_metric") \
            from None
    wanted = [f.strip() for f in features.split(",") if f.strip()] if features else None
    try:
        return await asyncio.to_thread(monitor.report, control.registry.home, endpoint, deployment,
                                       baseline_file=path, baseline_window=baseline_window, window=window,
                                       features=wanted, thresholds=thresholds)
    except ValueError as exc:
        raise SpecError(str(exc), field="baseline") from None
    except Exception as exc:  # DuckDB cannot read the baseline (a malformed file)
        if type(exc).__module__.startswith("duckdb"):
            raise SpecError(f"cannot read the data: {str(exc)[:300]}", field="baseline") from None
        raise


# -- scheduled monitors ------------------------------------------------------------------------

MonitorName = Annotated[str, Parameter(pattern=ASSET_NAME.pattern, max_length=255, description=(
    "A monitor's name: up to 255 letters, digits, '-', '_' and '.', a letter or digit first"))]
MAX_RUNS = 100


class MonitorIn(Struct, forbid_unknown_fields=True):
    body: dict[str, Any]  # an Azure ML monitor schedule document (schedule.schema.json, create_monitor), as JSON
    source: str = "<request>"
    base: str | None = None  # the folder a relative reference data path is relative to (the document's)


class RunView(Struct):
    """One run: when, its outcome (passed, failed, error, no_data), each signal's, and a line per signal."""

    id: int
    at: datetime
    status: str
    signals: dict[str, dict[str, Any]]  # name → {type, collection, status, failed_features, metrics, ...}
    summary: list[str]
    error: str | None = None


class RunLine(Struct):
    id: int
    at: datetime
    status: str
    failed: list[str]  # signal.feature of each failing feature


class MonitorView(Struct):
    name: str
    endpoint_name: str
    deployment_name: str
    trigger: dict[str, Any]
    signals: dict[str, dict[str, Any]]  # name → {type, collection, window, reference, features, thresholds}
    created_at: datetime
    updated_at: datetime
    last_run_at: datetime | None
    next_run_at: datetime | None  # null: the trigger fires no more
    status: str | None  # the last run's; null: not run yet
    summary: list[str]  # a line per signal of the last run
    last_run: RunView | None
    runs: list[RunLine]  # newest first (show only; the last MAX_RUNS are kept)
    display_name: str | None = None
    description: str | None = None
    ml_task: str | None = None
    compute: Any = None  # recorded: runs here need no compute
    alert_notification: Any = None  # recorded: alerts are the `monitor.signal` events


def _run_view(run: MonitorRun) -> RunView:
    found = run.result.get("signals", {})
    return RunView(id=run.id, at=_utc(run.at), status=run.status, signals=found,
                   summary=[signals.summary(n, s) for n, s in found.items()] or [run.result.get("error") or ""],
                   error=run.result.get("error"))


def _monitor_view(rec: MonitorRecord, runs: list[MonitorRun], history: bool) -> MonitorView:
    spec = rec.spec
    last = _run_view(runs[0]) if runs else None
    return MonitorView(
        name=rec.name, endpoint_name=rec.endpoint_name, deployment_name=rec.deployment_name,
        trigger=spec["trigger"], signals=spec["signals"], created_at=_utc(rec.created_at),
        updated_at=_utc(rec.updated_at), last_run_at=_utc(rec.last_run_at) if rec.last_run_at else None,
        next_run_at=_utc(rec.next_run_at) if rec.next_run_at else None, status=last.status if last else None,
        summary=last.summary if last else [], last_run=last,
        runs=[RunLine(id=r.id, at=_utc(r.at), status=r.status, failed=[
            f"{n}.{f}" for n, s in r.result.get("signals", {}).items() for f in s.get("failed_features", [])])
            for r in runs] if history else [],
        display_name=spec.get("display_name"), description=spec.get("description"), ml_task=spec.get("ml_task"),
        compute=spec.get("compute"), alert_notification=spec.get("alert_notification"))


def _read(request: Request[Any, Any, Any], name: str, history: bool) -> MonitorView:
    registry = _control(request).registry
    return _monitor_view(registry.get_monitor(name), registry.list_monitor_runs(name, MAX_RUNS if history else 1),
                         history)


@post("/monitors", status_code=201, responses=_answers(*_BODY, _MISSING))
async def create_monitor(request: Request[Any, Any, Any], data: MonitorIn) -> MonitorView:
    """A monitor from an Azure ML monitor schedule document (`trigger`, `create_monitor` with
    `monitoring_target.endpoint_deployment_id` and `monitoring_signals`); one of the same name is replaced.
    It runs on its trigger's schedule, each due run off the event loop."""
    _check_document(data.body, "body")
    _check_document(data.base, "base")
    control = _control(request)
    base = Path(data.base) if data.base else None
    try:
        record = await background.run(control.monitors.create, data.body, base)
    except SpecError as exc:
        exc.source = exc.source or data.source[:500]
        raise
    control.monitors.wake()
    return await asyncio.to_thread(_read, request, record.name, True)


@get("/monitors", responses=_answers(_BAD))
async def list_monitors(request: Request[Any, Any, Any], endpoint: Annotated[str | None, Parameter(
        max_length=255, description="Only the monitors of this endpoint's deployments")] = None) -> list[MonitorView]:
    """Every monitor (of one endpoint's deployments, with `endpoint`), each with its last run's signals."""
    def read() -> list[MonitorView]:
        registry = _control(request).registry
        return [_monitor_view(r, registry.list_monitor_runs(r.name, 1), False)
                for r in registry.list_monitors(endpoint)]
    return await asyncio.to_thread(read)


@get("/monitors/{name:str}", responses=_answers(_BAD, _MISSING))
async def show_monitor(request: Request[Any, Any, Any], name: MonitorName) -> MonitorView:
    """The monitor, its last run's signals in full (each feature's metric value and threshold), and its
    runs (the last 100 are kept)."""
    return await asyncio.to_thread(_read, request, name, True)


class MonitorDeleted(Struct):
    deleted: str


@delete("/monitors/{name:str}", status_code=200, responses=_answers(_BAD, _MISSING))
async def delete_monitor(request: Request[Any, Any, Any], name: MonitorName) -> MonitorDeleted:
    await asyncio.to_thread(_control(request).monitors.delete, name)
    return MonitorDeleted(deleted=name)


@post("/monitors/{name:str}/run", status_code=200, responses=_answers(_BAD, _MISSING))
async def run_monitor(request: Request[Any, Any, Any], name: MonitorName) -> MonitorView:
    """Runs the monitor now and answers once it has (its schedule is unchanged)."""
    control = _control(request)
    await background.run(control.monitors.run, name)
    return await asyncio.to_thread(_read, request, name, True)


HANDLERS = [drift_report, create_monitor, list_monitors, show_monitor, delete_monitor, run_monitor]
