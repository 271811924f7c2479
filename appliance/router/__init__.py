"""Data plane: authentication, admission, traffic choice, forwarding, mirroring, request log."""

from appliance.router.dataplane import DataPlane
from appliance.router.table import EndpointRoute, RoutingTable

__all__ = ["DataPlane", "EndpointRoute", "RoutingTable"]
