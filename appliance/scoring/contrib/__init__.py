"""What an Azure `score.py` imports from the inference server, without the server.

`azureml.contrib.services.aml_request` and `.aml_response` are the modules azureml-inference-server-http
1.5.1 (MIT) aliases into `sys.modules` for user scripts; here they are copies of them that load Flask
only when a script asks for `AMLRequest`/`AMLResponse`, so that scripts which don't pay nothing.
"""

from __future__ import annotations

import sys

from appliance.scoring.contrib import aml_request, aml_response

ALIASES = {"azureml.contrib.services.aml_request": aml_request,
           "azureml.contrib.services.aml_response": aml_response}
# The server's own module, when a script imports it by that name instead: its flag counts too.
SERVER_REQUEST_MODULE = "azureml_inference_server_http.api.aml_request"


def install() -> None:
    """Make `from azureml.contrib.services.aml_request import ...` work, as azmlinfsrv does."""
    for name, module in ALIASES.items():
        sys.modules.setdefault(name, module)


def rawhttp_requested() -> bool:
    """Whether `@rawhttp` decorated anything (a process-wide flag, as in azmlinfsrv)."""
    return any(getattr(sys.modules.get(name), "_rawHttpRequested", False)
               for name in ("azureml.contrib.services.aml_request", SERVER_REQUEST_MODULE))
