"""`azureml.ai.monitoring` for a score.py, when the real package (azureml-ai-monitoring) isn't installed.

Same interface as the package's 1.0: `Collector(name=..., on_error=None)`, and `collect(data,
correlation_context=None)`, which returns the correlation context to hand to the next collector so
that outputs join inputs. Rows land where the deployment's data collector puts them (collect.py):
the collection must be enabled in the deployment's `data_collector.collections`, at its sampling
rate; the correlation id is the request's x-request-id, as in the request log. `data` is a pandas
DataFrame, a dict of columns, a list of row dicts, or a pyarrow Table.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

from appliance.scoring import collect

NAME = "azureml.ai.monitoring"
log = logging.getLogger("azureml.ai.monitoring")


class BasicCorrelationContext:
    """The package's context: an id (and headers) that ties one request's collected rows together."""

    def __init__(self, id: str | None = None, timestamp: int | None = None, headers: dict[str, str] | None = None):
        self.id = id or str(uuid.uuid4())
        self.timestamp = timestamp if timestamp is not None else int(time.time())
        self.headers = headers or {}

    def get_id(self) -> str:
        return self.id

    def get_timestamp(self) -> int:
        return self.timestamp

    def get_headers(self) -> dict[str, str]:
        return self.headers

    def __repr__(self) -> str:
        return f"BasicCorrelationContext(id={self.id!r})"


def _table_columns(data: Any) -> collect.Columns:
    """The columns of what a script collects, as plain lists (copied now: the script may change it)."""
    if hasattr(data, "to_dict") and hasattr(data, "columns"):  # pandas DataFrame
        return {str(k): list(v) for k, v in data.to_dict(orient="list").items()}
    if hasattr(data, "to_pydict"):  # pyarrow Table
        return {str(k): list(v) for k, v in data.to_pydict().items()}
    if isinstance(data, dict):
        return {str(k): list(v) if isinstance(v, (list, tuple)) or hasattr(v, "tolist") else [v]
                for k, v in data.items()}
    if isinstance(data, list) and all(isinstance(r, dict) for r in data):
        names: dict[str, None] = {}
        for row in data:
            names.update(dict.fromkeys(map(str, row)))
        return {n: [row.get(n) for row in data] for n in names}
    raise TypeError(f"collect() takes a pandas DataFrame (or a dict of columns, a list of rows); got "
                    f"{type(data).__name__}")


def _values(columns: collect.Columns) -> collect.Columns:
    return {k: [v.item() if hasattr(v, "item") else v for v in vs] for k, vs in columns.items()}


class Collector:
    def __init__(self, *, name: str, on_error: Callable[[Exception], Any] | None = None, **_: Any) -> None:
        self.name = name
        self.on_error = on_error
        config = collect.process_config()
        self._config = config
        self.rate = config.rates.get(name, 0.0) if config else 0.0
        if not self.rate:
            log.warning("collection %r is not enabled in this deployment's data_collector: collect() "
                        "records nothing", name)

    def collect(self, data: Any, correlation_context: BasicCorrelationContext | None = None,
                **kwargs: Any) -> BasicCorrelationContext:
        context = correlation_context if correlation_context is not None else kwargs.get("context")
        if context is None:
            context = BasicCorrelationContext(collect.current_request_id())
        try:
            if self._config is not None and collect.sampled(context.get_id(), self.rate):
                columns = _table_columns(data)
                self._config.sink.add(self.name, context.get_id(), time.time(), _values, columns)
        except Exception as exc:
            if self.on_error is not None:
                self.on_error(exc)
            else:
                log.error("collect() on %r failed: %s", self.name, exc)
        return context


def install() -> bool:
    """Make `from azureml.ai.monitoring import Collector` work when the package isn't there (as
    contrib.install does for azureml.contrib.services); true if this shim is what it imports."""
    try:
        found = importlib.util.find_spec(NAME) is not None
    except (ImportError, ValueError):
        found = False
    if found:
        return False
    module = sys.modules[__name__]
    sys.modules.setdefault(NAME, module)
    sys.modules.setdefault(NAME + ".context", module)
    return sys.modules[NAME] is module
