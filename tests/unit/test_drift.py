"""Drift statistics (appliance/telemetry/drift.py) against scipy on the same binned data, and the
DuckDB aggregation (appliance/registry/collected.py) + report (appliance/telemetry/monitor.py) on files."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import special, stats
from scipy.spatial.distance import jensenshannon

from appliance.registry import collected
from appliance.telemetry import drift, monitor

TOL = 1e-9


def _pairs() -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(7)
    out = []
    for k in (2, 5, 20, 50):
        a = rng.integers(0, 1000, k).astype(float)
        b = rng.integers(0, 1000, k).astype(float)
        out.append((a, b))
    a = rng.integers(1, 100, 10).astype(float)
    b = a.copy()
    b[3] = 0  # an empty bin on one side
    out.append((a, b))
    out.append((a, a * 3))  # same proportions
    return out


@pytest.mark.parametrize("pair", _pairs())
def test_jensen_shannon_equals_scipy(pair: tuple[np.ndarray, np.ndarray]) -> None:
    a, b = pair
    assert drift.jensen_shannon(a, b) == pytest.approx(float(jensenshannon(a, b, base=2)), abs=TOL)


@pytest.mark.parametrize("pair", _pairs())
def test_psi_equals_symmetric_relative_entropy(pair: tuple[np.ndarray, np.ndarray]) -> None:
    a, b = pair
    p = np.maximum(a / a.sum(), drift.EPSILON)
    q = np.maximum(b / b.sum(), drift.EPSILON)
    expected = float(np.sum(special.rel_entr(q, p) + special.rel_entr(p, q)))  # = Σ (q - p) ln(q / p)
    assert drift.population_stability_index(a, b) == pytest.approx(expected, abs=TOL)


@pytest.mark.parametrize("pair", _pairs())
def test_wasserstein_equals_scipy(pair: tuple[np.ndarray, np.ndarray]) -> None:
    a, b = pair
    centers = np.cumsum(np.random.default_rng(len(a)).uniform(0.1, 2.0, len(a)))
    expected = stats.wasserstein_distance(centers, centers, a, b)
    assert drift.wasserstein(list(centers), a, b) == pytest.approx(expected, abs=TOL)
    assert drift.normalized_wasserstein(list(centers), a, b, 2.5) == pytest.approx(expected / 2.5, abs=TOL)


@pytest.mark.parametrize("pair", _pairs())
def test_chi_squared_equals_scipy(pair: tuple[np.ndarray, np.ndarray]) -> None:
    a, b = pair
    keep = (a + b) > 0
    statistic, p_value, dof = drift.chi_squared(a, b)
    expected = stats.chi2_contingency(np.vstack([a[keep], b[keep]]), correction=False)
    assert statistic == pytest.approx(expected.statistic, abs=TOL, rel=1e-12)
    assert p_value == pytest.approx(expected.pvalue, abs=TOL)
    assert dof == expected.dof


@pytest.mark.parametrize("a,x", [(0.5, 0.1), (0.5, 30.0), (1.0, 1.0), (4.5, 2.0), (4.5, 12.0), (24.5, 20.0),
                                 (24.5, 200.0), (100.0, 90.0), (1000.0, 1100.0)])
def test_gamma_q_equals_scipy(a: float, x: float) -> None:
    assert drift._gamma_q(a, x) == pytest.approx(float(special.gammaincc(a, x)), abs=1e-12)


def test_chi_squared_on_large_counts_agrees_with_chisquare() -> None:
    base = np.array([5000, 3000, 2000], dtype=float)
    target = np.array([480, 310, 210], dtype=float)
    statistic, p_value, _ = drift.chi_squared(base, target)
    assert p_value == pytest.approx(stats.chi2_contingency(np.vstack([base, target]), correction=False).pvalue,
                                    abs=TOL)
    assert statistic > 0


def test_sparkline_heights() -> None:
    assert drift.sparkline([0, 1, 2, 4]) == " ▃▅█"
    assert drift.sparkline([0, 0]) == "  "


FEATURES = ("f0", "f1", "f2", "f3", "f4")
SHIFTED = {"f1", "f3"}


def _write(path: Path, frame: dict[str, np.ndarray], at: datetime | None = None) -> None:
    columns: dict[str, object] = dict(frame)
    if at is not None:
        n = len(next(iter(frame.values())))
        columns = {"correlation_id": [f"id-{i}" for i in range(n)], "timestamp": [at] * n, **columns}
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)


def _data(rng: np.random.Generator, n: int, shift: set[str]) -> dict[str, np.ndarray]:
    out = {}
    for i, f in enumerate(FEATURES):
        values = rng.normal(10.0 * i, 1.0 + i, n)
        if f in shift:
            values = values + 1.0 * (1.0 + i)  # one baseline standard deviation
        out[f] = values
    out["colour"] = rng.choice(np.array(["red", "green", "blue"]), n, p=[0.5, 0.3, 0.2])
    return out


def test_only_the_shifted_features_drift(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    baseline = tmp_path / "baseline.parquet"
    _write(baseline, _data(rng, 20_000, set()))
    now = datetime(2025, 1, 2, 12, 30)
    hour = tmp_path / "home" / "data-collector" / "endpoint=ep" / "deployment=blue" / "collection=model_inputs" \
        / "hour=2025-01-02T12"
    _write(hour / "part-1.parquet", _data(rng, 5_000, SHIFTED), now - timedelta(minutes=10))
    _write(hour / "part-2.parquet", _data(rng, 100, set()), now - timedelta(hours=3))  # outside the window
    report = monitor.report(tmp_path / "home", "ep", "blue", baseline_file=baseline, window=3600, now=now)
    (collection,) = report["collections"]
    assert collection["kind"] == "data drift"
    by_name = {f["feature"]: f for f in collection["features"]}
    assert set(by_name) == {*FEATURES, "colour"}
    assert {f for f, r in by_name.items() if r["drift"]} == SHIFTED
    assert sorted(report["drifted"]) == ["model_inputs.f1", "model_inputs.f3"]
    assert by_name["f0"]["target"]["rows"] == 5_000  # the old part is outside the window
    assert by_name["colour"]["type"] == "categorical"
    # The report's metrics are the pure functions' on the histograms it shows.
    f1 = by_name["f1"]
    h = f1["histogram"]
    assert f1["metrics"]["jensen_shannon_distance"] == pytest.approx(
        float(jensenshannon(h["baseline"], h["target"], base=2)), abs=TOL)
    assert f1["metrics"]["normalized_wasserstein_distance"] == pytest.approx(
        stats.wasserstein_distance(h["centers"], h["centers"], h["baseline"], h["target"]) / f1["baseline"]["std"],
        abs=TOL)
    assert by_name["f1"]["out_of_range_rate"] >= 0


def test_baseline_window_and_csv_and_jsonl(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    home = tmp_path / "home"
    base = home / "data-collector" / "endpoint=ep" / "deployment=blue" / "collection=model_outputs"
    now = datetime(2025, 1, 2, 12, 30)
    _write(base / "hour=2025-01-02T06" / "a.parquet", {"label": rng.integers(0, 3, 3000)}, now - timedelta(hours=6))
    jsonl = base / "hour=2025-01-02T12" / "b.jsonl"
    jsonl.parent.mkdir(parents=True)
    jsonl.write_text("".join(f'{{"correlation_id": "x{i}", "timestamp": "{(now - timedelta(minutes=5)).isoformat()}", '
                             f'"label": {int(v)}}}\n' for i, v in enumerate(rng.integers(0, 3, 500))))
    report = monitor.report(home, "ep", None, baseline_window=24 * 3600, window=3600, now=now)
    (collection,) = report["collections"]
    assert collection["kind"] == "prediction drift"
    (label,) = collection["features"]
    assert label["target"]["rows"] == 500 and label["baseline"]["rows"] == 3000
    assert not label["drift"]
    csv = tmp_path / "b.csv"
    csv.write_text("label\n" + "\n".join(str(v) for v in rng.integers(5, 8, 100)) + "\n")
    shifted = monitor.report(home, "ep", "blue", baseline_file=csv, window=3600, now=now)
    assert shifted["collections"][0]["features"][0]["drift"]


def test_prune_removes_old_hours(tmp_path: Path) -> None:
    folder = tmp_path / "data-collector" / "endpoint=e" / "deployment=d" / "collection=c"
    for hour in ("2025-01-01T00", "2025-01-02T11", "2025-01-02T12"):
        (folder / f"hour={hour}").mkdir(parents=True)
    assert collected.prune(tmp_path, datetime(2025, 1, 2, 12, 30)) == 2
    assert [p.name for p in folder.iterdir()] == ["hour=2025-01-02T12"]


def test_bad_thresholds_refused() -> None:
    with pytest.raises(ValueError, match="numeric metric"):
        drift.Thresholds(numeric=("pearsons_chi_squared_test", 0.05)).check()


def test_compaction_keeps_every_row_once(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    hour = tmp_path / "data-collector" / "endpoint=ep" / "deployment=blue" / "collection=model_inputs" \
        / "hour=2025-01-02T10"
    at = datetime(2025, 1, 2, 10, 30)
    for i in range(3):
        _write(hour / f"part-{i}.parquet", {"f0": rng.normal(0, 1, 100)}, at)
    now = datetime(2025, 1, 2, 12, 30)

    def rows() -> int:
        report = monitor.report(tmp_path, "ep", None, baseline_window=3600, window=3 * 3600, now=now)
        return int(report["collections"][0]["features"][0]["target"]["rows"])

    _write(hour.with_name("hour=2025-01-02T08") / "part-0.parquet", {"f0": rng.normal(0, 1, 50)}, at.replace(hour=8))
    assert collected.compact(tmp_path) == (1, 0)  # the hour with three parts; one part is left as it is
    assert len(list(hour.glob("*.parquet"))) == 4 and rows() == 300  # the parts are still there, not read
    _write(hour / "part-9.parquet", {"f0": rng.normal(0, 1, 10)}, at)  # written since
    assert rows() == 310
    assert collected.compact(tmp_path) == (0, 0)  # one part an hour: nothing to merge
    _write(hour / "part-10.parquet", {"f0": rng.normal(0, 1, 5)}, at)
    assert collected.compact(tmp_path) == (1, 0) and rows() == 315  # two compacted files, the new parts held
    assert collected.compact(tmp_path, now=time.time() + collected.KEEP_PARTS + 1) == (0, 5)  # later
    assert sorted(p.name.split("-")[0] for p in hour.glob("*.parquet")) == ["compacted", "compacted"]
    assert rows() == 315
