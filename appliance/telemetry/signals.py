"""Scheduled model monitors: Azure ML's monitor schedule document (`schedule.schema.json` with
`create_monitor`) checked into a plain spec, and one run of a monitor: each signal's drift or data-quality
report over the data collector's files (`monitor.report`), judged against the signal's thresholds.

What runs here and what is only recorded:
- signals `data_drift` (the deployment's model_inputs), `prediction_drift` (model_outputs) and
  `data_quality` (model_inputs: null and out-of-bounds rates); none given: all three, as Azure's out-of-box
  monitor. Other types (feature_attribution_drift, custom, generation_safety_quality, model_performance)
  are refused.
- production data: the collected data of its `data_window` (lookback_window_size, lookback_window_offset;
  ISO 8601 durations such as P7D, or 30m / 2h / 7d); by default one period of the trigger.
- reference data: a file or folder (`input_data.path`, relative to the document; or a data asset
  azureml:NAME:VERSION), or a window of collected data just before the production window; by default the
  collected data of as long before.
- `features`: a list of names; `all_features`, or `top_n_feature_importance` (no feature importance is
  computed here): every feature.
- `compute`, `alert_notification`, `alert_enabled`, `data_column_names`, `ml_task`: recorded, no effect.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from appliance.specs import SpecError
from appliance.specs.names import ASSET_NAME, ENDPOINT_NAME
from appliance.telemetry import drift, monitor, schedule

TYPES = {"data_drift": "model_inputs", "prediction_drift": "model_outputs", "data_quality": "model_inputs"}
UNSUPPORTED = ("feature_attribution_drift", "custom", "generation_safety_quality", "generation_token_statistics",
               "model_performance")
QUALITY_METRICS = ("null_value_rate", "out_of_bounds_rate")
DRIFT_METRICS = {"numerical": drift.NUMERIC_METRICS, "categorical": drift.CATEGORICAL_METRICS}
DEFAULT_DRIFT = {"numerical": dict([drift.Thresholds.numeric]), "categorical": dict([drift.Thresholds.categorical])}
DEFAULT_QUALITY = {side: {"null_value_rate": drift.Thresholds.null_rate,
                          "out_of_bounds_rate": drift.Thresholds.out_of_range_rate}
                   for side in ("numerical", "categorical")}
PERIOD = {"minute": 60, "hour": 3600, "day": 86400, "week": 7 * 86400, "month": 30 * 86400}
MAX_WINDOW = 366 * 86400.0
MAX_SIGNALS = 50
MAX_FEATURES = 10_000
COLLECTION = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_ISO = re.compile(r"^P(?:(\d+(?:\.\d+)?)W)?(?:(\d+(?:\.\d+)?)D)?"
                  r"(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?)?$")

TOP = {"$schema", "name", "display_name", "description", "tags", "properties", "trigger", "create_monitor"}
MONITOR = {"compute", "monitoring_target", "monitoring_signals", "alert_notification"}
TARGET = {"ml_task", "endpoint_deployment_id", "model_id"}
SIGNAL = {"type", "production_data", "reference_data", "features", "metric_thresholds", "alert_enabled",
          "properties"}
DATA = {"input_data", "data_context", "data_window", "data_window_size", "data_column_names",
        "pre_processing_component"}
WINDOW = {"lookback_window_size", "lookback_window_offset"}


def duration(value: Any, field: str) -> float:
    """ISO 8601 (P7D, PT1H30M, P1W) or short (90s, 30m, 2h, 7d) → seconds (0 allowed: an offset)."""
    text = str(value).strip()
    seconds: float | None = None
    if (m := _ISO.fullmatch(text.upper())) and text.upper() not in ("P", "PT"):
        weeks, days, hours, minutes, secs = (float(g) if g else 0.0 for g in m.groups())
        seconds = (((weeks * 7 + days) * 24 + hours) * 60 + minutes) * 60 + secs
    elif re.fullmatch(r"\d+(\.\d+)?[smhd]?", text):
        unit = {"s": 1, "m": 60, "h": 3600, "d": 86400}.get(text[-1], 1)
        seconds = float(text.rstrip("smhd")) * unit
    if seconds is None or not 0 <= seconds <= MAX_WINDOW:
        raise SpecError(f"{text[:100]!r}: a duration such as P7D, PT1H (ISO 8601) or 30m, 2h, 7d, at most 366 days",
                        field=field)
    return seconds


def _mapping(value: Any, field: str, allowed: set[str], unknown: str = "no such field here") -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SpecError(f"{str(value)[:100]!r}: a mapping (of {', '.join(sorted(allowed))})", field=field)
    for key in value:
        if key not in allowed:
            raise SpecError(f"{unknown}; use {', '.join(sorted(allowed))}", field=f"{field}.{key}")
    return value


def _period(trigger: schedule.Trigger) -> float:
    if trigger.type == "cron":
        return 86400.0
    return float(min(PERIOD[trigger.frequency] * trigger.interval, MAX_WINDOW))


def _thresholds(value: Any, field: str, kind: str) -> dict[str, dict[str, float]]:
    metrics = {"numerical": QUALITY_METRICS, "categorical": QUALITY_METRICS} if kind == "data_quality" \
        else DRIFT_METRICS
    given = _mapping(value, field, set(metrics))
    out: dict[str, dict[str, float]] = {}
    for side, allowed in metrics.items():
        chosen = _mapping(given.get(side), f"{field}.{side}", set(allowed), f"not a {side} metric computed here")
        for metric, threshold in chosen.items():
            high = 1.0 if metric in (*QUALITY_METRICS, *drift.P_VALUE_METRICS) else 1e6
            if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 <= threshold <= high:
                raise SpecError(f"{threshold!r}: a number from 0 to {high:g}", field=f"{field}.{side}.{metric}")
        defaults = DEFAULT_QUALITY if kind == "data_quality" else DEFAULT_DRIFT
        out[side] = {m: float(v) for m, v in chosen.items()} or dict(defaults[side])
    return out


def _features(value: Any, field: str) -> list[str] | None:
    if value is None or value == "all_features":
        return None
    if isinstance(value, dict) and set(value) == {"top_n_feature_importance"}:
        n = value["top_n_feature_importance"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise SpecError(f"{n!r}: a whole number from 1", field=f"{field}.top_n_feature_importance")
        return None  # no feature importance here: every feature is monitored
    if isinstance(value, list) and value and len(value) <= MAX_FEATURES \
            and all(isinstance(f, str) and 0 < len(f) <= 1000 for f in value):
        return list(dict.fromkeys(value))
    raise SpecError(f"{str(value)[:100]!r}: a list of feature (column) names, all_features, or "
                    "{top_n_feature_importance: N}", field=field)


def _window(data: dict[str, Any], field: str) -> tuple[float | None, float | None]:
    """(size, offset) of a data section's window, if it gives one."""
    window = _mapping(data.get("data_window"), f"{field}.data_window", WINDOW)
    size = window.get("lookback_window_size", data.get("data_window_size"))
    where = f"{field}.data_window.lookback_window_size" if "lookback_window_size" in window \
        else f"{field}.data_window_size"
    seconds = duration(size, where) if size is not None else None
    if seconds == 0:
        raise SpecError(f"{size!r}: a window must be longer than 0", field=where)
    offset = window.get("lookback_window_offset")
    return seconds, duration(offset, f"{field}.data_window.lookback_window_offset") if offset is not None else None


Resolve = Callable[[str, str], str]
"""A reference data path or data asset (and its field) → an absolute path on this machine."""


def _signal(name: str, body: Any, period: float, resolve: Resolve) -> dict[str, Any]:
    field = f"create_monitor.monitoring_signals.{name}"
    if not ASSET_NAME.fullmatch(name) or len(name) > 128:
        raise SpecError(f"{name[:100]!r}: a signal name of letters, digits, '-', '_' and '.'", field=field)
    body = _mapping(body, field, SIGNAL)
    kind = body.get("type")
    if kind not in TYPES:
        extra = " (not computed here)" if kind in UNSUPPORTED else ""
        raise SpecError(f"{kind!r}{extra}: use {', '.join(TYPES)}", field=f"{field}.type")
    production = _mapping(body.get("production_data"), f"{field}.production_data", DATA)
    if "input_data" in production:
        raise SpecError("production data is the deployment's collected data here (its data_collector); give "
                        "data_context and data_window instead", field=f"{field}.production_data.input_data")
    collection = production.get("data_context", TYPES[kind])
    if not isinstance(collection, str) or not COLLECTION.fullmatch(collection):
        raise SpecError(f"{collection!r}: a collection of the data collector, such as model_inputs or "
                        "model_outputs", field=f"{field}.production_data.data_context")
    size, offset = _window(production, f"{field}.production_data")
    window, offset = size or period, offset or 0.0
    reference = _mapping(body.get("reference_data"), f"{field}.reference_data", DATA)
    ref: dict[str, Any] = {"data_context": reference.get("data_context")}
    input_data = reference.get("input_data")
    ref_size, ref_offset = _window(reference, f"{field}.reference_data")
    if input_data is not None:
        where = f"{field}.reference_data.input_data"
        input_data = _mapping(input_data, where, {"path", "type"})
        if not isinstance(input_data.get("path"), str) or not input_data["path"]:
            raise SpecError(f"{input_data.get('path')!r}: a file or folder (relative to the document) or a "
                            "data asset azureml:NAME:VERSION", field=f"{where}.path")
        if input_data.get("type", "uri_file") not in ("uri_file", "uri_folder", "mltable"):
            raise SpecError(f"{input_data['type']!r}: use uri_file, uri_folder or mltable", field=f"{where}.type")
        if ref_size is not None:
            raise SpecError("give reference input_data or a data_window, not both",
                            field=f"{field}.reference_data.data_window")
        ref |= {"path": resolve(input_data["path"], f"{where}.path"), "input": input_data["path"]}
    else:
        if ref_offset is not None and ref_offset != offset + window:
            raise SpecError(f"the reference window must end where the production window starts "
                            f"({_text(offset + window)} back): lookback_window_offset {_text(ref_offset)}",
                            field=f"{field}.reference_data.data_window.lookback_window_offset")
        ref["window"] = ref_size or window
    return {"type": kind, "collection": collection, "window": window, "offset": offset, "reference": ref,
            "features": _features(body.get("features"), f"{field}.features"),
            "thresholds": _thresholds(body.get("metric_thresholds"), f"{field}.metric_thresholds", kind),
            "alert_enabled": bool(body.get("alert_enabled", True))}


def _text(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def target(value: Any) -> tuple[str, str]:
    """`azureml:EP:DEP` → (EP, DEP)."""
    field = "create_monitor.monitoring_target.endpoint_deployment_id"
    parts = value.removeprefix("azureml:").split(":") if isinstance(value, str) else []
    if len(parts) != 2 or not all(ENDPOINT_NAME.fullmatch(p) and 3 <= len(p) <= 32 for p in parts):
        raise SpecError(f"{str(value)[:100]!r}: azureml:ENDPOINT:DEPLOYMENT, an online deployment here",
                        field=field)
    return parts[0], parts[1]


def parse(body: Any, now: datetime, resolve: Resolve) -> dict[str, Any]:
    """An Azure monitor schedule document, checked, as the spec stored and run (see the module's doc)."""
    body = _mapping(body, "document", TOP)
    name = body.get("name")
    if not isinstance(name, str) or not ASSET_NAME.fullmatch(name):
        raise SpecError(f"{str(name)[:100]!r}: a monitor name: up to 255 letters, digits, '-', '_' and '.', "
                        "a letter or digit first", field="name")
    if "trigger" not in body:
        raise SpecError("a monitor needs a trigger (type recurrence or cron)", field="trigger")
    trigger = schedule.parse(body["trigger"], now)
    if "create_monitor" not in body:
        raise SpecError("a monitor schedule needs create_monitor (monitoring_target, monitoring_signals)",
                        field="create_monitor")
    create = _mapping(body["create_monitor"], "create_monitor", MONITOR)
    aim = _mapping(create.get("monitoring_target"), "create_monitor.monitoring_target", TARGET)
    endpoint, deployment = target(aim.get("endpoint_deployment_id"))
    given = _mapping(create.get("monitoring_signals"), "create_monitor.monitoring_signals",
                     set(create.get("monitoring_signals") or {}))
    if len(given) > MAX_SIGNALS:
        raise SpecError(f"{len(given)} signals: at most {MAX_SIGNALS}", field="create_monitor.monitoring_signals")
    if not given:  # Azure's out-of-box monitor: each signal with its defaults
        given = {kind: {"type": kind} for kind in TYPES}
    period = _period(trigger)
    for key in ("display_name", "description"):
        if body.get(key) is not None and not isinstance(body[key], str):
            raise SpecError(f"{str(body[key])[:100]!r}: text", field=key)
    return {"name": name, "display_name": body.get("display_name"), "description": body.get("description"),
            "tags": body.get("tags") or {}, "trigger": trigger.as_dict(), "endpoint": endpoint,
            "deployment": deployment, "ml_task": aim.get("ml_task"), "compute": create.get("compute"),
            "alert_notification": create.get("alert_notification"),
            "signals": {str(k): _signal(str(k), v, period, resolve) for k, v in given.items()}}


# -- a run -------------------------------------------------------------------------------------

def _judge(feature: dict[str, Any], signal: dict[str, Any]) -> list[dict[str, Any]]:
    """The feature's value and verdict for each of the signal's thresholds on its side."""
    side = "numerical" if feature["type"] == "numeric" else "categorical"
    out = []
    for metric, threshold in signal["thresholds"][side].items():
        if signal["type"] == "data_quality":
            value = feature["null_rate"] if metric == "null_value_rate" else feature["out_of_range_rate"]
        else:
            value = feature["metrics"].get(metric)
        passed = value is None or (value >= threshold if metric in drift.P_VALUE_METRICS else value <= threshold)
        out.append({"feature": feature["feature"], "type": feature["type"], "metric": metric, "value": value,
                    "threshold": threshold, "passed": passed})
    return out


def evaluate(signal: dict[str, Any], report: dict[str, Any]) -> dict[str, Any]:
    """A signal's outcome from its drift report: per feature and metric, the value against the threshold."""
    collections = [c for c in report["collections"] if c["collection"] == signal["collection"]]
    metrics = [row for c in collections for f in c["features"] for row in _judge(f, signal)]
    failed = list(dict.fromkeys(m["feature"] for m in metrics if not m["passed"]))
    status = "no_data" if not collections else "failed" if failed else "passed"
    return {"type": signal["type"], "collection": signal["collection"], "status": status,
            "features": len({m["feature"] for m in metrics}), "failed_features": failed, "metrics": metrics,
            "window": report["window"], "baseline": collections[0]["baseline"] if collections else None}


def run(home: Path, spec: dict[str, Any], now: datetime) -> dict[str, Any]:
    """One run of a monitor at `now` (naive UTC): every signal, a failing one not stopping the others."""
    signals: dict[str, Any] = {}
    for name, signal in spec["signals"].items():
        ref = signal["reference"]
        try:
            report = monitor.report(
                home, spec["endpoint"], spec["deployment"],
                baseline_file=Path(ref["path"]) if ref.get("path") else None,
                baseline_window=None if ref.get("path") else ref["window"], window=signal["window"],
                features=signal["features"], now=now - timedelta(seconds=signal["offset"]))
            signals[name] = evaluate(signal, report)
        except Exception as exc:  # a reference file gone or unreadable: this signal's error, the others run
            signals[name] = {"type": signal["type"], "collection": signal["collection"], "status": "error",
                             "error": f"{type(exc).__name__}: {str(exc)[:500]}", "features": 0,
                             "failed_features": [], "metrics": []}
    states = {s["status"] for s in signals.values()}
    status = next((s for s in ("failed", "error", "passed") if s in states), "no_data")
    return {"at": now.isoformat(), "status": status, "signals": signals}


def summary(name: str, signal: dict[str, Any]) -> str:
    """One line for a signal's last outcome."""
    head = f"{name} ({signal['type']}): "
    features = f"{signal['features']} feature{'' if signal['features'] == 1 else 's'}"
    if signal["status"] == "failed":
        return head + f"FAILED {', '.join(signal['failed_features'])} ({len(signal['failed_features'])} of {features})"
    if signal["status"] == "passed":
        return head + f"passed ({features})"
    if signal["status"] == "error":
        return head + f"error: {signal.get('error')}"
    return head + f"no collected {signal['collection']} data in the window"
