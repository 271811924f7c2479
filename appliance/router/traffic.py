"""Traffic choice: a pure function from weights and a uniform number to a deployment name."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Split:
    """Cumulative weights, computed once per traffic change, so choosing is one bisect."""

    names: tuple[str, ...]
    bounds: tuple[int, ...]  # running totals; the last is the sum

    @classmethod
    def of(cls, weights: Mapping[str, int]) -> Split:
        names, bounds, total = [], [], 0
        for name, weight in sorted(weights.items()):
            if weight > 0:
                total += weight
                names.append(name)
                bounds.append(total)
        return cls(tuple(names), tuple(bounds))

    @property
    def total(self) -> int:
        return self.bounds[-1] if self.bounds else 0

    def choose(self, u: float) -> str | None:
        """`u` uniform in [0, 1): the deployment it falls on, or None when nothing takes traffic."""
        if not self.bounds:
            return None
        return self.names[bisect_right(self.bounds, u * self.total)]

