"""Drift and data-quality statistics: pure functions over histograms (counts per bin or category).

Azure ML model monitoring's metrics, computed on binned data (the binning and counting are DuckDB's,
in appliance/registry/collected.py; these never see a row):
- Jensen-Shannon distance, base 2 (0 same, 1 disjoint), as `scipy.spatial.distance.jensenshannon(p, q, 2)`;
- population stability index, Σ (q - p) ln(q / p) over the bins' proportions, each floored at `EPSILON`
  so an empty bin counts as a small one rather than infinity;
- normalized Wasserstein distance (numeric features): the 1-Wasserstein (earth mover's) distance between
  the two histograms, mass at the bin centres (`scipy.stats.wasserstein_distance(c, c, p, q)`), divided by
  the baseline's standard deviation (a shift of 0.1 reads as a tenth of the baseline's spread; the
  baseline's range if it has no spread, else 1);
- Pearson's chi-squared test (categorical features): the statistic and p-value of the 2 × k contingency
  table baseline/target × category (`scipy.stats.chi2_contingency(table, correction=False)`);
- null rate, and out-of-range rate: target values outside the baseline's [min, max] (numeric), or
  categories the baseline never had (categorical).
Verdicts: a feature drifts when its metric passes its threshold (Azure's defaults: normalized
Wasserstein 0.1 for numeric features, Jensen-Shannon 0.1 for categorical ones; a p-value passes when
below). Data quality is flagged apart: null rate up by more than its threshold, out-of-range rate above its.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

EPSILON = 1e-4  # PSI: the smallest proportion a bin counts for
BINS = 20  # numeric features: equal-width bins over the union of both ranges
NUMERIC_METRICS = ("normalized_wasserstein_distance", "jensen_shannon_distance", "population_stability_index")
CATEGORICAL_METRICS = ("jensen_shannon_distance", "population_stability_index", "pearsons_chi_squared_test")
P_VALUE_METRICS = ("pearsons_chi_squared_test",)
SPARKS = "▁▂▃▄▅▆▇█"


@dataclass(frozen=True)
class Thresholds:
    numeric: tuple[str, float] = ("normalized_wasserstein_distance", 0.1)
    categorical: tuple[str, float] = ("jensen_shannon_distance", 0.1)
    null_rate: float = 0.01  # flagged when the target's null rate exceeds the baseline's by more
    out_of_range_rate: float = 0.01  # flagged when more of the target is outside the baseline's range

    def check(self) -> Thresholds:
        if self.numeric[0] not in NUMERIC_METRICS:
            raise ValueError(f"numeric metric {self.numeric[0]!r}: one of {', '.join(NUMERIC_METRICS)}")
        if self.categorical[0] not in CATEGORICAL_METRICS:
            raise ValueError(f"categorical metric {self.categorical[0]!r}: one of {', '.join(CATEGORICAL_METRICS)}")
        for what, value in (("numeric", self.numeric[1]), ("categorical", self.categorical[1]),
                            ("null rate", self.null_rate), ("out-of-range rate", self.out_of_range_rate)):
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{what} threshold {value!r}: a number >= 0")
        return self


def proportions(counts: Sequence[float]) -> list[float]:
    total = float(sum(counts))
    if total <= 0:
        raise ValueError("a histogram with no values")
    return [c / total for c in counts]


def _rel_entr(x: float, y: float) -> float:
    """x ln(x / y), as scipy.special.rel_entr: 0 for x = 0, infinite for y = 0 < x."""
    if x > 0 and y > 0:
        return x * math.log(x / y)
    return 0.0 if x == 0 and y >= 0 else math.inf


def jensen_shannon(baseline: Sequence[float], target: Sequence[float]) -> float:
    """Jensen-Shannon distance, base 2, of two histograms over the same bins."""
    p, q = proportions(baseline), proportions(target)
    m = [(a + b) / 2 for a, b in zip(p, q, strict=True)]
    total = sum(_rel_entr(a, c) + _rel_entr(b, c) for a, b, c in zip(p, q, m, strict=True))
    return math.sqrt(max(total / 2 / math.log(2), 0.0))


def population_stability_index(baseline: Sequence[float], target: Sequence[float], epsilon: float = EPSILON) -> float:
    p = [max(x, epsilon) for x in proportions(baseline)]
    q = [max(x, epsilon) for x in proportions(target)]
    return sum((b - a) * math.log(b / a) for a, b in zip(p, q, strict=True))


def wasserstein(centers: Sequence[float], baseline: Sequence[float], target: Sequence[float]) -> float:
    """1-Wasserstein distance of two histograms with their mass at `centers` (increasing)."""
    p, q = proportions(baseline), proportions(target)
    distance, cp, cq = 0.0, 0.0, 0.0
    for i in range(len(centers) - 1):
        cp += p[i]
        cq += q[i]
        distance += abs(cp - cq) * (centers[i + 1] - centers[i])
    return distance


def normalized_wasserstein(centers: Sequence[float], baseline: Sequence[float], target: Sequence[float],
                           scale: float) -> float:
    return wasserstein(centers, baseline, target) / (scale if scale > 0 else 1.0)


def _gamma_q(a: float, x: float) -> float:
    """The regularized upper incomplete gamma function Q(a, x) (scipy.special.gammaincc)."""
    if x <= 0:
        return 1.0
    log_front = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1:  # series for P(a, x)
        term = total = 1.0 / a
        n = a
        for _ in range(10_000):
            n += 1
            term *= x / n
            total += term
            if abs(term) < abs(total) * 1e-17:
                break
        return max(0.0, 1.0 - total * math.exp(log_front))
    tiny = 1e-300  # continued fraction for Q(a, x), modified Lentz
    b = x + 1 - a
    c, d = 1 / tiny, 1 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-16:
            break
    return math.exp(log_front) * h


def chi_squared(baseline: Sequence[float], target: Sequence[float]) -> tuple[float, float, int]:
    """Pearson's chi-squared test of homogeneity: (statistic, p-value, degrees of freedom) of the
    2 × k table of counts, categories that neither side has left out."""
    columns = [(a, b) for a, b in zip(baseline, target, strict=True) if a + b > 0]
    dof = len(columns) - 1
    rows = (sum(a for a, _ in columns), sum(b for _, b in columns))
    total = rows[0] + rows[1]
    if dof < 1 or rows[0] == 0 or rows[1] == 0:
        return 0.0, 1.0, max(dof, 0)
    statistic = 0.0
    for a, b in columns:
        for observed, row in ((a, rows[0]), (b, rows[1])):
            expected = row * (a + b) / total
            statistic += (observed - expected) ** 2 / expected
    return statistic, _gamma_q(dof / 2, statistic / 2), dof


def rate(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def numeric_bins(low: float, high: float, bins: int = BINS) -> tuple[float, float, list[float]]:
    """(start, width, centres) of `bins` equal-width bins over [low, high] (one bin if they are equal)."""
    if not high > low:
        return low, 0.0, [low]
    width = (high - low) / bins
    return low, width, [low + (i + 0.5) * width for i in range(bins)]


def sparkline(counts: Sequence[float], top: float | None = None) -> str:
    """One character a bin, its height relative to `top` (default: the largest count)."""
    top = max(counts, default=0) if top is None else top
    if not top:
        return " " * len(counts)
    return "".join(" " if c <= 0 else SPARKS[min(len(SPARKS) - 1, int(c / top * (len(SPARKS) - 1) + 0.5))]
                   for c in counts)


@dataclass
class Side:
    """One side of a comparison of one feature: its rows, nulls and histogram."""

    rows: int
    nulls: int
    counts: list[int]
    minimum: float | None = None
    maximum: float | None = None
    std: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _verdict(metric: str, value: float, threshold: float) -> bool:
    return value < threshold if metric in P_VALUE_METRICS else value > threshold


def _quality(baseline: Side, target: Side, out_of_range: int, thresholds: Thresholds) -> dict[str, Any]:
    null_base, null_target = rate(baseline.nulls, baseline.rows), rate(target.nulls, target.rows)
    oor = rate(out_of_range, target.rows - target.nulls)
    return {"null_rate_baseline": null_base, "null_rate": null_target, "out_of_range_rate": oor,
            "quality_issues": [name for name, flagged in (
                ("null_rate", null_target - null_base > thresholds.null_rate),
                ("out_of_range_rate", oor > thresholds.out_of_range_rate)) if flagged]}


def compare_numeric(feature: str, centers: list[float], baseline: Side, target: Side, out_of_range: int,
                    thresholds: Thresholds) -> dict[str, Any]:
    """A numeric feature's report: every numeric metric, the verdict by the chosen one, data quality."""
    scale = baseline.std or 0.0
    if not scale > 0 and baseline.minimum is not None and baseline.maximum is not None:
        scale = baseline.maximum - baseline.minimum
    if not sum(baseline.counts) or not sum(target.counts):
        metrics: dict[str, float | None] = dict.fromkeys(NUMERIC_METRICS)
    else:
        metrics = {
            "normalized_wasserstein_distance": normalized_wasserstein(centers, baseline.counts, target.counts, scale),
            "jensen_shannon_distance": jensen_shannon(baseline.counts, target.counts),
            "population_stability_index": population_stability_index(baseline.counts, target.counts)}
    metric, threshold = thresholds.numeric
    value = metrics[metric]
    return {"feature": feature, "type": "numeric", "metrics": metrics, "metric": metric, "value": value,
            "threshold": threshold, "drift": value is not None and _verdict(metric, value, threshold),
            **_quality(baseline, target, out_of_range, thresholds),
            "baseline": {"rows": baseline.rows, "min": baseline.minimum, "max": baseline.maximum, "std": baseline.std},
            "target": {"rows": target.rows, "min": target.minimum, "max": target.maximum, "std": target.std},
            "histogram": {"centers": centers, "baseline": baseline.counts, "target": target.counts}}


def compare_categorical(feature: str, baseline: dict[str, int], base_nulls: int, base_rows: int,
                        target: dict[str, int], target_nulls: int, target_rows: int,
                        thresholds: Thresholds) -> dict[str, Any]:
    """A categorical feature's report, over the union of both sides' categories."""
    categories = sorted(set(baseline) | set(target), key=lambda c: (-baseline.get(c, 0), c))
    b = [baseline.get(c, 0) for c in categories]
    t = [target.get(c, 0) for c in categories]
    if not sum(b) or not sum(t):
        metrics: dict[str, float | None] = dict.fromkeys((*CATEGORICAL_METRICS, "chi_squared_statistic"))
    else:
        statistic, p_value, _ = chi_squared(b, t)
        metrics = {"jensen_shannon_distance": jensen_shannon(b, t),
                   "population_stability_index": population_stability_index(b, t),
                   "pearsons_chi_squared_test": p_value, "chi_squared_statistic": statistic}
    metric, threshold = thresholds.categorical
    value = metrics[metric]
    unseen = sum(n for c, n in target.items() if c not in baseline)
    base_side, target_side = Side(base_rows, base_nulls, b), Side(target_rows, target_nulls, t)
    return {"feature": feature, "type": "categorical", "metrics": metrics, "metric": metric, "value": value,
            "threshold": threshold, "drift": value is not None and _verdict(metric, value, threshold),
            **_quality(base_side, target_side, unseen, thresholds),
            "baseline": {"rows": base_rows}, "target": {"rows": target_rows},
            "histogram": {"categories": categories, "baseline": b, "target": t}}
