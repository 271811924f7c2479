"""Model monitoring over the data collector's files: `GET /endpoints/{endpoint}/drift`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

from litestar import Request, get
from litestar.params import Parameter

from appliance.daemon.api import _BAD, _MISSING, _answers, _control
from appliance.specs import SpecError
from appliance.telemetry import drift, monitor

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


HANDLERS = [drift_report]
