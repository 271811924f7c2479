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
    keys: tuple[bytes, bytes]  # key mode: primary and secondary
    token_secret: bytes  # token mode: the daemon's signing secret
    endpoint_id: str  # token mode: what a token must name besides the endpoint (new when re-created)
    traffic: Mapping[str, int]
    mirror_traffic: Mapping[str, int]
    deployments: Mapping[str, DeploymentRuntime]
    split: Split = field(init=False)
    mirror: tuple[str, int] | None = field(init=False)  # the one mirror target and its percent

    def __post_init__(self) -> None:
        object.__setattr__(self, "split", Split.of(self.traffic))
        targets = [(name, pct) for name, pct in self.mirror_traffic.items() if pct > 0]
        object.__setattr__(self, "mirror", targets[0] if targets else None)


class RoutingTable:
    def __init__(self) -> None:
        self.endpoints: dict[str, EndpointRoute] = {}

    def put(self, route: EndpointRoute) -> None:
        self.endpoints[route.name] = route

    def remove(self, name: str) -> None:
        self.endpoints.pop(name, None)
