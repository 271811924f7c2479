"""Scheduled model monitors without a daemon: when a trigger fires next (appliance/telemetry/schedule.py,
pure), Azure monitor documents checked (appliance/telemetry/signals.py), runs kept in the registry, and the
scheduler's loop running a due monitor by itself, its clock injected (appliance/daemon/monitors.py)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from appliance.daemon.monitors import Monitors
from appliance.registry import Registry
from appliance.registry.monitors import MONITOR_RUNS
from appliance.specs import OnlineDeploymentSpec, OnlineEndpointSpec, SpecError
from appliance.telemetry import schedule, signals

T0 = datetime(2025, 1, 1, 0, 0)  # a Wednesday


def fires(body: dict[str, Any], after: datetime, n: int = 3, now: datetime = T0) -> list[datetime]:
    trigger = schedule.parse(body, now)
    out: list[datetime] = []
    for _ in range(n):
        at = schedule.next_run(trigger, out[-1] if out else after)
        assert at is not None
        out.append(at)
    return out


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


# -- recurrence ---------------------------------------------------------------------------------

def test_daily_at_given_hour_and_minute() -> None:
    body = {"type": "recurrence", "frequency": "day", "interval": 1, "schedule": {"hours": 3, "minutes": 15}}
    assert fires(body, T0) == [at("2025-01-01T03:15"), at("2025-01-02T03:15"), at("2025-01-03T03:15")]
    assert fires(body, at("2025-01-01T03:15"), 1) == [at("2025-01-02T03:15")]  # strictly after


def test_every_other_day_from_the_start_time() -> None:
    body = {"type": "recurrence", "frequency": "day", "interval": 2, "start_time": "2025-01-01T10:00:00"}
    assert fires(body, T0) == [at("2025-01-01T10:00"), at("2025-01-03T10:00"), at("2025-01-05T10:00")]


def test_minutes_and_hours_count_from_the_start() -> None:
    every5 = {"type": "recurrence", "frequency": "minute", "interval": 5}
    assert fires(every5, at("2025-01-01T00:07"), 2) == [at("2025-01-01T00:10"), at("2025-01-01T00:15")]
    hours = {"type": "recurrence", "frequency": "hour", "interval": 2, "schedule": {"minutes": [0, 30]},
             "start_time": "2025-01-01T01:10:00Z"}
    assert fires(hours, T0, 4) == [at("2025-01-01T01:30"), at("2025-01-01T03:00"), at("2025-01-01T03:30"),
                                   at("2025-01-01T05:00")]
    plain = {"type": "recurrence", "frequency": "hour", "interval": 6, "start_time": "2025-01-01T01:10:00"}
    assert fires(plain, at("2025-01-01T02:00"), 2) == [at("2025-01-01T07:10"), at("2025-01-01T13:10")]


def test_weekly_on_week_days() -> None:
    body = {"type": "recurrence", "frequency": "week", "interval": 1,
            "schedule": {"week_days": ["monday", "Friday"], "hours": [9], "minutes": [0]}}
    assert fires(body, T0) == [at("2025-01-03T09:00"), at("2025-01-06T09:00"), at("2025-01-10T09:00")]
    fortnightly = {**body, "interval": 2}
    assert fires(fortnightly, T0) == [at("2025-01-03T09:00"), at("2025-01-13T09:00"), at("2025-01-17T09:00")]


def test_monthly_on_the_31st_is_a_short_months_last_day() -> None:
    body = {"type": "recurrence", "frequency": "month", "interval": 1,
            "schedule": {"month_days": [31], "hours": 0, "minutes": 0}}
    assert fires(body, T0) == [at("2025-01-31T00:00"), at("2025-02-28T00:00"), at("2025-03-31T00:00")]


def test_time_zone_hours_are_local() -> None:
    body = {"type": "recurrence", "frequency": "day", "interval": 1, "schedule": {"hours": 3, "minutes": 15},
            "time_zone": "Europe/Paris"}
    assert fires(body, T0, 1) == [at("2025-01-01T02:15")]  # CET, UTC+1
    assert fires(body, at("2025-07-01T00:00"), 1) == [at("2025-07-01T01:15")]  # CEST, UTC+2


def test_nothing_fires_before_the_start_time() -> None:
    body = {"type": "recurrence", "frequency": "minute", "interval": 1, "start_time": "2025-03-01T12:00:00"}
    assert fires(body, T0, 1) == [at("2025-03-01T12:00")]


# -- cron ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("expression", "after", "expected"), [
    ("*/15 * * * *", "2025-01-01T10:07", ["2025-01-01T10:15", "2025-01-01T10:30"]),
    ("0 9 * * 1-5", "2025-01-03T09:00", ["2025-01-06T09:00", "2025-01-07T09:00"]),  # Friday → Monday
    ("0 0 13 * 5", "2025-01-01T00:00", ["2025-01-03T00:00", "2025-01-10T00:00"]),  # the 13th or a Friday
    ("30 4 1 jan *", "2025-01-01T05:00", ["2026-01-01T04:30", "2027-01-01T04:30"]),
    ("0 12 * * sun,7", "2025-01-01T00:00", ["2025-01-05T12:00", "2025-01-12T12:00"]),
    ("5-10/5 0 * * *", "2025-01-01T00:00", ["2025-01-01T00:05", "2025-01-01T00:10"]),
])
def test_cron(expression: str, after: str, expected: list[str]) -> None:
    assert fires({"type": "cron", "expression": expression}, at(after), 2) == [at(e) for e in expected]


@pytest.mark.parametrize(("body", "field", "words"), [
    ({"type": "recurrence", "frequency": "fortnight", "interval": 1}, "trigger.frequency", "minute, hour, day"),
    ({"type": "recurrence", "frequency": "day", "interval": 0}, "trigger.interval", "from 1"),
    ({"type": "recurrence", "frequency": "day", "interval": True}, "trigger.interval", "whole number"),
    ({"type": "recurrence", "frequency": "day", "schedule": {"hours": 24}}, "trigger.schedule.hours", "0 to 23"),
    ({"type": "recurrence", "frequency": "day", "schedule": {"week_days": ["monday"]}},
     "trigger.schedule.week_days", "not with frequency day"),
    ({"type": "recurrence", "frequency": "week", "schedule": {"week_days": ["moonday"]}},
     "trigger.schedule.week_days", "monday, tuesday"),
    ({"type": "recurrence", "frequency": "day", "every": 1}, "trigger.every", "no such field"),
    ({"type": "recurrence", "frequency": "day", "time_zone": "Mars/Olympus"}, "trigger.time_zone", "IANA"),
    ({"type": "recurrence", "frequency": "day", "start_time": "yesterday"}, "trigger.start_time", "ISO 8601"),
    ({"type": "weekly"}, "trigger.type", "recurrence or cron"),
    ({"type": "cron", "expression": "61 * * * *"}, "trigger.expression", "'61' is not a minute"),
    ({"type": "cron", "expression": "* * * *"}, "trigger.expression", "five fields"),
    ({"type": "cron", "expression": "0 0 30 2 *"}, "trigger.expression", "never fires"),
])
def test_bad_triggers_are_refused_naming_the_field(body: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(SpecError) as caught:
        schedule.parse(body, T0)
    assert caught.value.field == field and words in caught.value.message, caught.value


def test_stored_trigger_round_trips() -> None:
    trigger = schedule.parse({"type": "recurrence", "frequency": "week", "interval": 2, "time_zone": "Europe/Paris",
                              "schedule": {"week_days": ["friday"], "hours": [9], "minutes": [30]}}, T0)
    again = schedule.from_dict(trigger.as_dict())
    assert again == trigger and schedule.next_run(again, T0) == schedule.next_run(trigger, T0)


# -- monitor documents --------------------------------------------------------------------------

def document(**signals_: Any) -> dict[str, Any]:
    return {"$schema": "http://azureml/sdk-2-0/Schedule.json", "name": "iris_monitor",
            "trigger": {"type": "recurrence", "frequency": "hour", "interval": 1},
            "create_monitor": {"compute": {"instance_type": "standard_e4s_v3", "runtime_version": "3.4"},
                               "monitoring_target": {"ml_task": "classification",
                                                     "endpoint_deployment_id": "azureml:my-ep:blue"},
                               "monitoring_signals": signals_,
                               "alert_notification": {"emails": ["a@example.com"]}}}


def no_files(value: str, field: str) -> str:
    raise AssertionError(f"no reference path expected, got {value} at {field}")


def test_out_of_box_monitor_gets_the_three_signals() -> None:
    spec = signals.parse(document(), T0, no_files)
    assert (spec["endpoint"], spec["deployment"]) == ("my-ep", "blue")
    assert set(spec["signals"]) == {"data_drift", "prediction_drift", "data_quality"}
    drift_ = spec["signals"]["data_drift"]
    assert drift_["collection"] == "model_inputs" and drift_["window"] == 3600  # one period of the trigger
    assert drift_["reference"]["window"] == 3600
    assert spec["signals"]["prediction_drift"]["collection"] == "model_outputs"
    assert spec["compute"]["instance_type"] == "standard_e4s_v3"  # recorded


def test_signal_windows_thresholds_and_reference_file() -> None:
    spec = signals.parse(document(drift={
        "type": "data_drift",
        "production_data": {"data_context": "model_inputs", "data_window": {"lookback_window_size": "P1D"}},
        "reference_data": {"input_data": {"path": "./train.parquet", "type": "uri_file"}, "data_context": "training"},
        "features": ["a", "b"], "alert_enabled": True,
        "metric_thresholds": {"numerical": {"jensen_shannon_distance": 0.05},
                              "categorical": {"pearsons_chi_squared_test": 0.02}}},
        quality={"type": "data_quality", "features": {"top_n_feature_importance": 10},
                 "production_data": {"data_window_size": "PT2H"},
                 "reference_data": {"data_window": {"lookback_window_size": "6h", "lookback_window_offset": "PT2H"}},
                 "metric_thresholds": {"numerical": {"null_value_rate": 0.05}}}),
        T0, lambda value, field: f"/data/{value.removeprefix('./')}")
    drift_, quality = spec["signals"]["drift"], spec["signals"]["quality"]
    assert drift_["window"] == 86400 and drift_["reference"]["path"] == "/data/train.parquet"
    assert drift_["thresholds"] == {"numerical": {"jensen_shannon_distance": 0.05},
                                    "categorical": {"pearsons_chi_squared_test": 0.02}}
    assert drift_["features"] == ["a", "b"]
    assert quality["window"] == 7200 and quality["reference"]["window"] == 6 * 3600 and quality["features"] is None
    assert quality["thresholds"]["numerical"] == {"null_value_rate": 0.05}
    assert quality["thresholds"]["categorical"] == signals.DEFAULT_QUALITY["categorical"]


@pytest.mark.parametrize(("change", "field", "words"), [
    (lambda d: d.update(colour="blue"), "document.colour", "no such field"),
    (lambda d: d["create_monitor"].update(monitoring_target={"endpoint_deployment_id": "azureml:my-ep"}),
     "create_monitor.monitoring_target.endpoint_deployment_id", "azureml:ENDPOINT:DEPLOYMENT"),
    (lambda d: d["create_monitor"]["monitoring_signals"].update(s={"type": "feature_attribution_drift"}),
     "create_monitor.monitoring_signals.s.type", "not computed here"),
    (lambda d: d["create_monitor"]["monitoring_signals"].update(s={"type": "data_drift", "metric_thresholds": {
        "numerical": {"two_sample_kolmogorov_smirnov_test": 0.1}}}),
     "create_monitor.monitoring_signals.s.metric_thresholds.numerical.two_sample_kolmogorov_smirnov_test",
     "jensen_shannon_distance"),
    (lambda d: d["create_monitor"]["monitoring_signals"].update(s={"type": "data_drift", "metric_thresholds": {
        "numerical": {"jensen_shannon_distance": -1}}}),
     "create_monitor.monitoring_signals.s.metric_thresholds.numerical.jensen_shannon_distance", "from 0"),
    (lambda d: d["create_monitor"]["monitoring_signals"].update(s={"type": "data_drift", "production_data": {
        "data_window": {"lookback_window_size": "a week"}}}),
     "create_monitor.monitoring_signals.s.production_data.data_window.lookback_window_size", "P7D"),
    (lambda d: d["create_monitor"]["monitoring_signals"].update(s={"type": "data_drift", "features": 3}),
     "create_monitor.monitoring_signals.s.features", "list of feature"),
    (lambda d: d.pop("trigger"), "trigger", "needs a trigger"),
    (lambda d: d.update(name="no spaces"), "name", "monitor name"),
])
def test_bad_documents_are_refused_naming_the_field(change: Any, field: str, words: str) -> None:
    body = document()
    change(body)
    with pytest.raises(SpecError) as caught:
        signals.parse(body, T0, no_files)
    assert caught.value.field == field and words in caught.value.message, caught.value


def test_verdicts_per_metric_data_quality_and_p_values() -> None:
    spec = signals.parse(document(
        quality={"type": "data_quality", "metric_thresholds": {"numerical": {"null_value_rate": 0.05},
                                                               "categorical": {"out_of_bounds_rate": 0.1}}},
        drift={"type": "data_drift", "metric_thresholds": {"categorical": {"pearsons_chi_squared_test": 0.05}}}),
        T0, no_files)
    report = {"window": {}, "collections": [{"collection": "model_inputs", "baseline": "b", "features": [
        {"feature": "age", "type": "numeric", "null_rate": 0.1, "out_of_range_rate": 0.5,
         "metrics": {"normalized_wasserstein_distance": 0.05}},
        {"feature": "colour", "type": "categorical", "null_rate": 0.0, "out_of_range_rate": 0.2,
         "metrics": {"pearsons_chi_squared_test": 0.01}},
        {"feature": "city", "type": "categorical", "null_rate": 0.0, "out_of_range_rate": 0.0,
         "metrics": {"pearsons_chi_squared_test": 0.5}}]}]}
    quality = signals.evaluate(spec["signals"]["quality"], report)
    assert quality["failed_features"] == ["age", "colour"]  # nulls past 5%; unseen categories past 10%
    assert (quality["metrics"][0]["metric"], quality["metrics"][0]["value"]) == ("null_value_rate", 0.1)
    drift_ = signals.evaluate(spec["signals"]["drift"], report)
    assert drift_["failed_features"] == ["colour"]  # a p-value fails below its threshold; age is under 0.1
    assert signals.evaluate(spec["signals"]["drift"], {"window": {}, "collections": []})["status"] == "no_data"


# -- runs in the registry, and the scheduler ----------------------------------------------------

FEATURES = ("f0", "f1", "f2", "f3")
SHIFTED = {"f1", "f3"}


def collect(home: Path, at_: datetime, n: int, shift: set[str], seed: int) -> None:
    """Collected model inputs of my-ep/blue at `at_`, as the data collector writes them."""
    rng = np.random.default_rng(seed)
    columns: dict[str, Any] = {"correlation_id": [f"{seed}-{i}" for i in range(n)], "timestamp": [at_] * n}
    for i, f in enumerate(FEATURES):
        columns[f] = rng.normal(10.0 * i, 1.0 + i, n) + ((1.0 + i) if f in shift else 0.0)
    folder = home / "data-collector" / "endpoint=my-ep" / "deployment=blue" / "collection=model_inputs" \
        / f"hour={at_:%Y-%m-%dT%H}"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), folder / f"part-{seed}.parquet")


def test_runs_are_kept_bounded(registry: Registry) -> None:
    spec = signals.parse(document(), T0, no_files)
    registry.put_monitor(spec, T0)
    for i in range(MONITOR_RUNS + 5):
        registry.add_monitor_run("iris_monitor", T0 + timedelta(minutes=i), {"status": "passed", "signals": {}},
                                 T0 + timedelta(minutes=i + 1))
    runs = registry.list_monitor_runs("iris_monitor", 1000)
    assert len(runs) == MONITOR_RUNS and runs[0].at == T0 + timedelta(minutes=MONITOR_RUNS + 4)
    assert registry.get_monitor("iris_monitor").next_run_at == T0 + timedelta(minutes=MONITOR_RUNS + 5)
    registry.delete_monitor("iris_monitor")
    assert registry.list_monitor_runs("iris_monitor") == [] and registry.list_monitors() == []
    assert registry.add_monitor_run("iris_monitor", T0, {"status": "passed", "signals": {}}, None) is None


def test_the_scheduler_runs_a_due_monitor_by_itself(registry: Registry) -> None:
    registry.put_endpoint(OnlineEndpointSpec(name="my-ep"), "pk", "sk")
    registry.put_deployment(OnlineDeploymentSpec(name="blue", endpoint_name="my-ep", model="azureml:iris:1"), None)
    start = datetime(2025, 1, 2, 12, 0)
    collect(registry.home, start - timedelta(minutes=30), 4000, set(), 1)  # the reference: the hour before
    collect(registry.home, start + timedelta(minutes=30), 2000, SHIFTED, 2)  # the production window
    clock = {"now": start}
    monitors = Monitors(registry, clock=lambda: clock["now"], tick=0.01)
    body = document(drift={"type": "data_drift", "metric_thresholds": {
        "numerical": {"normalized_wasserstein_distance": 0.1}}})
    body["trigger"] = {"type": "recurrence", "frequency": "hour", "interval": 1, "start_time": start.isoformat()}
    created = monitors.create(body, None)
    assert created.next_run_at == start + timedelta(hours=1)  # the first run: a period after it is created

    async def scenario() -> None:
        clock["now"] = start + timedelta(hours=1)  # the first run is due
        monitors.start()
        try:
            deadline = asyncio.get_running_loop().time() + 30
            while not await asyncio.to_thread(registry.list_monitor_runs, "iris_monitor"):
                assert asyncio.get_running_loop().time() < deadline, "the scheduler did not run the due monitor"
                await asyncio.sleep(0.01)
        finally:
            await monitors.stop()

    asyncio.run(scenario())
    (run,) = registry.list_monitor_runs("iris_monitor")
    assert run.status == "failed" and run.at == start + timedelta(hours=1)
    outcome = run.result["signals"]["drift"]
    assert set(outcome["failed_features"]) == SHIFTED and outcome["features"] == len(FEATURES)
    assert all(m["metric"] == "normalized_wasserstein_distance" and m["threshold"] == 0.1 for m in outcome["metrics"])
    record = registry.get_monitor("iris_monitor")
    assert record.last_run_at == run.at and record.next_run_at == start + timedelta(hours=2)  # missed runs: once
    events = [e for e in registry.list_events("my-ep") if e.kind == "monitor.signal"]
    assert [(e.detail["signal"], sorted(e.detail["failed_features"])) for e in events] == [("drift", sorted(SHIFTED))]
    assert "FAILED f1, f3 (2 of 4 features)" in signals.summary("drift", outcome)
