"""Azure's traffic and mirror rules, as a pure check over names and percentages."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from appliance.specs.errors import SpecError


def parse_assignments(text: str, field: str) -> dict[str, int]:
    """`blue=90,green=10` or Azure's `"blue=90 green=10"` → {"blue": 90, "green": 10}."""
    result: dict[str, int] = {}
    for part in text.replace(",", " ").split():
        name, sep, value = part.partition("=")
        if not sep or not name or not value.strip().isdigit():
            raise SpecError(f"{part!r} is not of the form <deployment>=<percent>, as in blue=90,green=10",
                            field=field)
        result[name] = int(value)
    return result


def check(traffic: Mapping[str, int], mirror: Mapping[str, int], deployments: Iterable[str]) -> None:
    """Live traffic sums to 0 or 100; one mirror target, at most 50%, with 0% live traffic;
    every name is a deployment of the endpoint."""
    known = set(deployments)
    for field, assignments in (("traffic", traffic), ("mirror_traffic", mirror)):
        for name, percent in assignments.items():
            if name not in known:
                raise SpecError(f"deployment {name!r} does not exist on this endpoint "
                                f"(it has: {', '.join(sorted(known)) or 'none'})", field=f"{field}.{name}")
            if not 0 <= percent <= 100:
                raise SpecError(f"{percent} is not a percentage from 0 to 100", field=f"{field}.{name}")
    total = sum(traffic.values())
    if total not in (0, 100):
        shown = ", ".join(f"{k}={v}" for k, v in traffic.items())
        raise SpecError(f"live traffic must add up to 0 or 100; {shown} adds up to {total}", field="traffic")
    mirrored = {k: v for k, v in mirror.items() if v > 0}
    if len(mirrored) > 1:
        raise SpecError(f"only one deployment can receive mirror traffic; got {', '.join(mirrored)}",
                        field="mirror_traffic")
    for name, percent in mirrored.items():
        if percent > 50:
            raise SpecError(f"mirror traffic is at most 50%; {name}={percent}", field=f"mirror_traffic.{name}")
        if traffic.get(name, 0) > 0:
            raise SpecError(f"deployment {name!r} takes {traffic[name]}% of live traffic, so it can't also "
                            "receive mirror traffic: set its live traffic to 0 first",
                            field=f"mirror_traffic.{name}")
