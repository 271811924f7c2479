"""appliance: Azure ML online endpoints and deployments on one machine, promotable to Kubernetes."""

__version__ = "0.1.0"
