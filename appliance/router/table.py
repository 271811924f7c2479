"""What the data plane knows about each endpoint, rebuilt by the daemon on every change.

An `EndpointRoute` is immutable: a change swaps the whole object, so a request in flight sees
either the old routing or the new, never half of each.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from appliance.router.traffic import Split
from appliance.runtime import DeploymentRuntime


@dataclass(frozen=True)
class EndpointRoute:
    name: str
    auth_mode: str
    keys: tuple[bytes, ...]  # key mode: primary and secondary
    traffic: Mapping[str, int]
    mirror_traffic: Mapping[str, int]
    deployments: Mapping[str, DeploymentRuntime]
    split: Split = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "split", Split.of(self.traffic))


class RoutingTable:
    def __init__(self) -> None:
        self.endpoints: dict[str, EndpointRoute] = {}

    def put(self, route: EndpointRoute) -> None:
        self.endpoints[route.name] = route

    def remove(self, name: str) -> None:
        self.endpoints.pop(name, None)
