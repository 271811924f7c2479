"""Supervisor: start/stop/health/restart of instances, log capture, rolling replace."""

from appliance.runtime.plan import LaunchPlan
from appliance.runtime.supervisor import DeploymentRuntime, Instance, Supervisor
from appliance.runtime.transport import HTTPClient, Response

__all__ = ["DeploymentRuntime", "HTTPClient", "Instance", "LaunchPlan", "Response", "Supervisor"]
