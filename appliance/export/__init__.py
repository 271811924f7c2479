"""Export: pure renderers from specs to files a platform team applies (kustomize base + overlays with
Gateway API, Istio or KServe traffic; Indexed Jobs for batch) or to Azure ML CLI v2 YAML.

Every function here maps specs (and `inputs`, what the daemon found out: image references, model
names, runtime kinds) to `{relative path: file text}`; nothing reads or writes files or talks to Docker.
"""

from appliance.export.inputs import BatchEndpointExport, BatchUnit, ImageRef, OnlineEndpointExport, OnlineUnit, Options
from appliance.export.kustomize import render

__all__ = ["BatchEndpointExport", "BatchUnit", "ImageRef", "OnlineEndpointExport", "OnlineUnit", "Options", "render"]
