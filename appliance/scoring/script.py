"""A user's Azure `score.py`, run the way azureml-inference-server-http 1.5.1 runs it.

`init()` once; then `run(raw_data)` (or `run(raw_data, request_headers)`) per request, with the
body as a UTF-8 string, and the answer JSON-encoded; the same status codes and error bodies.
Calls run one at a time on a thread of their own (azmlinfsrv's sync worker does the same), so the
event loop keeps answering probes while a slow `run` works.
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import json
import logging
import sys
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

log = logging.getLogger("azmlinfsrv.user_script")

RUN_FAILED = "An unexpected error occurred in scoring script. Check the logs for more info."
INTERNAL = "An unexpected internal error occurred. Check the logs for more info."


class ScriptError(RuntimeError):
    """The script can't be served (import failed, init or run missing or malformed, init raised)."""


Reply = tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]


class ScriptScorer:
    def __init__(self, app_root: Path, entry_script: str) -> None:
        self.path = app_root / entry_script
        sys.path.append(str(app_root))  # as azmlinfsrv: the script's folder is importable
        try:
            spec = importlib.util.spec_from_file_location("entry_module", self.path)
            assert spec and spec.loader
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        except BaseException as exc:
            raise ScriptError(f"Failed to import user script {self.path} because it raised an unhandled "
                              f"exception:\n{traceback.format_exc()}") from exc
        for fn in ("init", "run"):
            if not hasattr(module, fn):
                raise ScriptError(f"User script at {self.path} does not have a {fn}() function defined.")
        self._init: Callable[[], Any] = module.init
        self._run: Callable[..., Any] = module.run
        self._argument, self._with_headers = _analyze(self._run)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="run")

    def init(self) -> None:
        try:
            self._init()
        except BaseException as exc:
            raise ScriptError(f"init() of {self.path} raised:\n{traceback.format_exc()}") from exc

    async def score(self, method: str, body: bytes, headers: dict[str, str]) -> Reply:
        if method == "OPTIONS":
            return 200, b"text/html; charset=utf-8", b"", []
        if method != "POST":
            return _error(405, "Method not allowed")
        try:
            raw = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            return _error(400, f"Input cannot be decoded as UTF-8: {exc}")
        kwargs: dict[str, Any] = {self._argument: raw}
        if self._with_headers:
            kwargs["request_headers"] = headers
        started = time.perf_counter()
        try:
            output = await asyncio.get_running_loop().run_in_executor(self._executor, lambda: self._run(**kwargs))
        except Exception:
            log.error("Encountered Exception: %s", traceback.format_exc())
            return _error(500, RUN_FAILED, run_failed=True)
        elapsed = f"{(time.perf_counter() - started) * 1000:.3f}".encode()
        try:
            payload = json.dumps(output).encode()
        except (TypeError, ValueError):
            log.error("Encountered Exception: %s", traceback.format_exc())
            return _error(500, INTERNAL)
        return 200, b"application/json", payload, [(b"x-ms-run-function-failed", b"False"),
                                                   (b"x-ms-run-fn-exec-ms", elapsed)]


def _analyze(run: Callable[..., Any]) -> tuple[str, bool]:
    """(name of the data argument, whether run takes request_headers), with azmlinfsrv's rules."""
    params = list(inspect.signature(run).parameters.values())
    if any(p.kind not in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params):
        raise ScriptError("run() cannot accept positional-only arguments, *args, or **kwargs.")
    with_headers = any(p.name == "request_headers" for p in params)
    rest = [p for p in params if p.name != "request_headers"]
    if not rest:
        raise ScriptError('run() needs to accept an argument other than "request_headers".' if with_headers
                          else "run() needs to accept an argument for input data.")
    return rest[0].name, with_headers


def _error(status: int, message: str, run_failed: bool = False) -> Reply:
    return status, b"application/json", json.dumps({"message": message}).encode(), [
        (b"x-ms-run-function-failed", b"True" if run_failed else b"False")]
