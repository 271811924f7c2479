"""Supervisor: start/stop/health/restart of instances, log capture, rolling replace."""

from appliance.runtime.plan import LaunchPlan
from appliance.runtime.supervisor import DeploymentRuntime, Instance, Supervisor
from appliance.runtime.transport import Response, UnixClient

__all__ = ["DeploymentRuntime", "Instance", "LaunchPlan", "Response", "Supervisor", "UnixClient"]
