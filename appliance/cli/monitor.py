"""`appliance monitor drift ENDPOINT [--deployment D] (--baseline FILE | --baseline-window 24h) [--window 1h]
[--features a,b] [--numeric-metric M] [--threshold ...]`: drift of the data collector's data; and scheduled
monitors: `appliance monitor create -f FILE | list | show NAME | delete NAME | run NAME`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from appliance.cli import output
from appliance.cli.common import Command, Group, client, confirm, duration, reporting, yes_option
from appliance.cli.output import Column, emit, output_option

NUMERIC = ("normalized_wasserstein_distance", "jensen_shannon_distance", "population_stability_index")
CATEGORICAL = ("jensen_shannon_distance", "population_stability_index", "pearsons_chi_squared_test")
SHORT = {"normalized_wasserstein_distance": "wasserstein", "jensen_shannon_distance": "js",
         "population_stability_index": "psi", "pearsons_chi_squared_test": "chi2 p"}
SPARKS = "▁▂▃▄▅▆▇█"


@click.group(cls=Group)
def group() -> None:
    """Model monitoring of the data collector's data (deployments with `data_collector` collections):
    drift reports now, and monitors that run on a schedule."""


COLUMNS: list[Column] = [
    ("NAME", lambda m: m["name"]), ("DEPLOYMENT", lambda m: f"{m['endpoint_name']}/{m['deployment_name']}"),
    ("TRIGGER", lambda m: trigger_text(m["trigger"])), ("SIGNALS", lambda m: ", ".join(m["signals"])),
    ("STATUS", lambda m: m.get("status") or "not run"), ("LAST RUN", lambda m: m.get("last_run_at")),
    ("NEXT RUN", lambda m: m.get("next_run_at"))]
METRIC_ROWS: list[Column] = [
    ("SIGNAL", lambda r: r["signal"]), ("FEATURE", lambda r: r["feature"]), ("TYPE", lambda r: r["type"]),
    ("METRIC", lambda r: r["metric"]), ("VALUE", lambda r: _fmt(r["value"])),
    ("THRESHOLD", lambda r: f"{'<' if r['metric'] == CATEGORICAL[2] else '>'} {r['threshold']:g}"),
    ("VERDICT", lambda r: "ok" if r["passed"] else "FAIL")]


def trigger_text(trigger: dict[str, Any]) -> str:
    """A trigger in a few words: `cron 0 3 * * *`, `every 2 hours`, `every day at 03:15 (Europe/Paris)`."""
    if trigger["type"] == "cron":
        text = f"cron {trigger['expression']}"
    else:
        n, unit = trigger["interval"], trigger["frequency"]
        text = f"every {unit}" if n == 1 else f"every {n} {unit}s"
        when = trigger.get("schedule") or {}
        if when.get("week_days"):
            text += " on " + ",".join(d[:3] for d in when["week_days"])
        if when.get("month_days"):
            text += " on day " + ",".join(map(str, when["month_days"]))
        hours, minutes = when.get("hours"), when.get("minutes")
        if hours:
            text += " at " + ",".join(f"{h:02d}:{m:02d}" for h in hours for m in minutes or [0])
        elif minutes:
            text += " at minute " + ",".join(map(str, minutes))
    zone = trigger.get("time_zone") or "UTC"
    return text if zone == "UTC" else f"{text} ({zone})"


def monitor_lines(monitors: list[dict[str, Any]]) -> list[str]:
    """Each monitor's last run in a line, then a line per signal (for `endpoint show` and `monitor run`)."""
    lines = []
    for m in monitors:
        state = m.get("status") or "not run yet"
        lines.append(f"{m['name']} ({m['deployment_name']}, {trigger_text(m['trigger'])}): {state}"
                     + (f" at {m['last_run_at']}" if m.get("last_run_at") else "")
                     + (f"; next {m['next_run_at']}" if m.get("next_run_at") else ""))
        lines += [f"  {line}" for line in m.get("summary") or []]
    return lines


def _metric_rows(view: dict[str, Any]) -> list[dict[str, Any]]:
    run = view.get("last_run") or {}
    return [{"signal": name, **row} for name, signal in (run.get("signals") or {}).items()
            for row in signal.get("metrics", [])]


def _show(view: dict[str, Any], fmt: str, query: str | None) -> None:
    if fmt != "table" or query:
        emit(view, fmt, expression=query)
        return
    emit({k: view[k] for k in ("name", "endpoint_name", "deployment_name", "created_at", "last_run_at",
                               "next_run_at", "status")} | {"trigger": trigger_text(view["trigger"])}, "table")
    rows = _metric_rows(view)
    if rows:
        click.echo()
        emit(rows, "table", METRIC_ROWS)
    click.echo()
    for line in monitor_lines([view])[1:] or ["  not run yet (appliance monitor run NAME runs it now)"]:
        click.echo(line.strip())


@group.command("create", cls=Command)
@click.option("-f", "--file", "file", type=click.Path(dir_okay=False, exists=True), required=True,
              help="An Azure ML monitor schedule (YAML).")
@click.option("-n", "--name", help="The monitor's name (default: the file's `name`).")
@output_option()
@click.pass_context
def create(ctx: click.Context, file: str, name: str | None, fmt: str, query: str | None) -> None:
    """Create (or replace) a scheduled monitor from an Azure ML monitor schedule, as `az ml schedule create`
    takes it:

    \b
      name: iris_monitor
      trigger: {type: recurrence, frequency: day, interval: 1, schedule: {hours: 3, minutes: 15}}
               # or {type: cron, expression: "15 3 * * *"}; frequency minute|hour|day|week|month;
               # start_time, time_zone (UTC or an IANA name)
      create_monitor:
        monitoring_target: {ml_task: classification, endpoint_deployment_id: azureml:my-ep:blue}
        monitoring_signals:            # none: data_drift, prediction_drift and data_quality, defaults
          inputs_drift:
            type: data_drift           # or prediction_drift (model_outputs), data_quality (model_inputs)
            production_data: {data_window: {lookback_window_size: P1D}}   # default: one trigger period
            reference_data:            # a file or folder (or azureml:DATA:VERSION) ...
              input_data: {path: ./train.parquet, type: uri_file}
              # ... or the collected data before the production window:
              # data_window: {lookback_window_size: P7D}
            features: [sepal_length, petal_width]                      # default: all
            metric_thresholds:         # a feature fails on any metric past its threshold
              numerical: {normalized_wasserstein_distance: 0.1}
              categorical: {jensen_shannon_distance: 0.1}
          # numerical: normalized_wasserstein_distance, jensen_shannon_distance, population_stability_index;
          # categorical: jensen_shannon_distance, population_stability_index, pearsons_chi_squared_test (a p-value);
          # data_quality: null_value_rate, out_of_bounds_rate

    compute, alert_notification and ml_task are recorded and have no effect here; a failing signal is a
    `monitor.signal` event (appliance endpoint show, the TUI's describe)."""
    from appliance.specs import read_yaml

    with reporting():
        body = dict(read_yaml(file)[0])
        if name:
            body["name"] = name
        source = Path(file).resolve()
        view = client(ctx).create_monitor(body, str(source), str(source.parent))
    if fmt != "table" or query:
        emit(view, fmt, expression=query)
    else:
        emit([view], "table", COLUMNS)
    output.hint(f"next: appliance monitor run {view['name']}   (runs it now)")


@group.command("list", cls=Command)
@click.option("--endpoint", "-e", help="Only the monitors of this endpoint's deployments.")
@output_option()
@click.pass_context
def list_(ctx: click.Context, endpoint: str | None, fmt: str, query: str | None) -> None:
    """Every scheduled monitor: its trigger, signals, last run's status and next run."""
    with reporting():
        emit(client(ctx).list_monitors(endpoint), fmt, COLUMNS, query)


@group.command("show", cls=Command)
@click.argument("name")
@output_option()
@click.pass_context
def show(ctx: click.Context, name: str, fmt: str, query: str | None) -> None:
    """A monitor and its last run: per signal and feature, each metric's value against its threshold."""
    with reporting():
        view = client(ctx).get_monitor(name)
    _show(view, fmt, query)


@group.command("run", cls=Command)
@click.argument("name")
@output_option()
@click.pass_context
def run(ctx: click.Context, name: str, fmt: str, query: str | None) -> None:
    """Run a monitor now (its schedule stays as it is) and print its signals."""
    with reporting():
        view = client(ctx).run_monitor(name)
    _show(view, fmt, query)


@group.command("delete", cls=Command)
@click.argument("name")
@yes_option
@click.pass_context
def delete(ctx: click.Context, name: str, yes: bool) -> None:
    """Delete a monitor and its runs."""
    confirm(yes, f"Delete monitor {name} and its runs?", "deleting a monitor deletes its runs")
    with reporting():
        client(ctx).delete_monitor(name)
    output.note(f"monitor {name} deleted")


@group.command(cls=Command)
@click.argument("endpoint")
@click.option("--deployment", "-d", help="One deployment's data (default: every deployment of the endpoint).")
@click.option("--baseline", type=click.Path(exists=True), help="Baseline data: a Parquet, CSV or JSON lines file "
              "(e.g. the training set), columns named as the collected ones.")
@click.option("--baseline-window", help="Or: the collected data of this long before --window (e.g. 24h).")
@click.option("--window", default="1h", show_default=True, help="The collected data of this long, up to now.")
@click.option("--features", help="Comma-separated features to compare (default: all both sides have).")
@click.option("--numeric-metric", type=click.Choice(NUMERIC), default=NUMERIC[0], show_default=True)
@click.option("--numeric-threshold", type=float, default=0.1, show_default=True)
@click.option("--categorical-metric", type=click.Choice(CATEGORICAL), default=CATEGORICAL[0], show_default=True)
@click.option("--categorical-threshold", type=float, default=0.1, show_default=True,
              help="For pearsons_chi_squared_test a p-value: drift below it.")
@click.option("--null-rate-threshold", type=float, default=0.01, show_default=True)
@click.option("--out-of-range-threshold", type=float, default=0.01, show_default=True)
@click.option("--chart/--no-chart", default=True, help="Table output: baseline and window histograms side by side.")
@output_option()
@click.pass_context
def drift(ctx: click.Context, endpoint: str, deployment: str | None, baseline: str | None,
          baseline_window: str | None, window: str, features: str | None, numeric_metric: str,
          numeric_threshold: float, categorical_metric: str, categorical_threshold: float,
          null_rate_threshold: float, out_of_range_threshold: float, chart: bool, fmt: str,
          query: str | None) -> None:
    """Data drift (model_inputs), prediction drift (model_outputs) and data quality of ENDPOINT's collected
    data in the last --window against a baseline, per feature with Azure's metrics."""
    if (baseline is None) == (baseline_window is None):
        raise click.UsageError("give --baseline FILE or --baseline-window DURATION (one of them)")
    with reporting():
        report = client(ctx).drift(
            endpoint, deployment=deployment, baseline=str(Path(baseline).resolve()) if baseline else None,
            baseline_window=duration(baseline_window, "--baseline-window") if baseline_window else None,
            window=duration(window, "--window"), features=features, numeric_metric=numeric_metric,
            numeric_threshold=numeric_threshold, categorical_metric=categorical_metric,
            categorical_threshold=categorical_threshold, null_rate_threshold=null_rate_threshold,
            out_of_range_threshold=out_of_range_threshold)
    if fmt != "table" or query:
        emit(report, fmt, expression=query)
        return
    rows = [_row(c, f) for c in report["collections"] for f in c["features"]]
    if not rows:
        output.fail(f"no collected data of {endpoint} in the window to compare (is a data_collector collection "
                    "enabled, and were requests scored?)")
        return
    emit(rows, "table", [(h, _getter(h)) for h in rows[0]])
    if chart:
        width = max(len(r["feature"]) for r in rows)
        click.echo("\nhistograms, baseline | window (same bins; each scaled to its own peak)")
        for c in report["collections"]:
            for f in c["features"]:
                h = f["histogram"]
                click.echo(f"  {f['feature']:<{width}}  {_spark(h['baseline'])} | {_spark(h['target'])}"
                           f"  {'DRIFT' if f['drift'] else ''}")
    drifted = report["drifted"]
    output.progress(f"{len(drifted)} feature(s) drifted: {', '.join(drifted)}" if drifted
                    else "no feature drifted")


def _getter(name: str) -> Any:
    return lambda row: row[name]


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _row(collection: dict[str, Any], feature: dict[str, Any]) -> dict[str, Any]:
    m = feature["metrics"]
    return {"collection": collection["collection"], "feature": feature["feature"], "type": feature["type"],
            "js": _fmt(m.get("jensen_shannon_distance")), "psi": _fmt(m.get("population_stability_index")),
            "wasserstein": _fmt(m.get("normalized_wasserstein_distance")),
            "chi2 p": _fmt(m.get("pearsons_chi_squared_test")),
            "nulls": f"{feature['null_rate']:.1%}", "out of range": f"{feature['out_of_range_rate']:.1%}",
            "threshold": f"{SHORT[feature['metric']]} {'<' if feature['metric'] == CATEGORICAL[2] else '>'} "
                         f"{feature['threshold']:g}",
            "verdict": "DRIFT" if feature["drift"] else "ok",
            "quality": ", ".join(feature["quality_issues"]) or "ok"}


def _spark(counts: list[int]) -> str:
    top = max(counts, default=0)
    if not top:
        return " " * len(counts)
    return "".join(" " if c <= 0 else SPARKS[min(7, int(c / top * 7 + 0.5))] for c in counts)
