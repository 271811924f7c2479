"""`appliance monitor drift ENDPOINT [--deployment D] (--baseline FILE | --baseline-window 24h) [--window 1h]
[--features a,b] [--numeric-metric M] [--threshold ...]`: drift of the data collector's data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from appliance.cli import output
from appliance.cli.common import Command, Group, client, duration, reporting
from appliance.cli.output import emit, output_option

NUMERIC = ("normalized_wasserstein_distance", "jensen_shannon_distance", "population_stability_index")
CATEGORICAL = ("jensen_shannon_distance", "population_stability_index", "pearsons_chi_squared_test")
SHORT = {"normalized_wasserstein_distance": "wasserstein", "jensen_shannon_distance": "js",
         "population_stability_index": "psi", "pearsons_chi_squared_test": "chi2 p"}
SPARKS = "▁▂▃▄▅▆▇█"


@click.group(cls=Group)
def group() -> None:
    """Model monitoring of the data collector's data (deployments with `data_collector` collections)."""


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
