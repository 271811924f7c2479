"""`azureml.contrib.services.aml_request`, as azureml-inference-server-http 1.5.1 ships it (MIT),
except that Flask is imported on first use of `AMLRequest` rather than on import."""

from __future__ import annotations

from typing import Any

_rawHttpRequested = False


def rawhttp(func: Any) -> Any:
    """Attribute applied to run() function in score.py to request raw HTTP access"""
    global _rawHttpRequested
    _rawHttpRequested = True
    return func


def __getattr__(name: str) -> Any:
    if name != "AMLRequest":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from flask import Request

    class AMLRequest(Request):
        """AMLRequest class used by score.py that needs raw HTTP access"""

        # Only a type for annotations. azmlinfsrv also defines `__init__(self)` calling `super().__init__()`,
        # which fails without Flask's `environ` argument; left out, so AMLRequest() still fails the same way.

    AMLRequest.__module__ = __name__
    globals()["AMLRequest"] = AMLRequest
    return AMLRequest
