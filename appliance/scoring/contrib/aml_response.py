"""`azureml.contrib.services.aml_response`, as azureml-inference-server-http 1.5.1 ships it (MIT),
except that Flask is imported on first use of `AMLResponse` rather than on import."""

from __future__ import annotations

import json
from typing import Any


def __getattr__(name: str) -> Any:
    if name != "AMLResponse":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from flask import Response

    class AMLResponse(Response):
        """AMLResponse class used by score.py that needs raw HTTP access"""

        def __init__(self, message: Any, status_code: int, response_headers: dict[str, str] | None = None,
                     json_str: bool = False, run_function_failed: bool = False) -> None:
            response_headers = response_headers or {}
            if message is not None:
                if json_str:
                    super().__init__(json.dumps(message), status=status_code, mimetype="application/json")
                else:
                    super().__init__(message, status=status_code)
                    if "Content-Type" in response_headers:
                        self.headers.remove("Content-Type")  # the loop below adds the script's own
            else:
                super().__init__(json.dumps({}), status=status_code, mimetype="application/json")

            self.headers["x-ms-run-function-failed"] = run_function_failed
            # Repeated headers come comma-separated (RFC 2616 §4.2): one header per value.
            for header, value in response_headers.items():
                for v in value.split(","):
                    self.headers.add_header(header, v.strip())

    AMLResponse.__module__ = __name__
    globals()["AMLResponse"] = AMLResponse
    return AMLResponse
