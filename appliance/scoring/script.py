"""A user's Azure `score.py`, served the way azureml-inference-server-http 1.5.1 (azmlinfsrv) serves it.

`init()` once; then per request `run(raw_data)` / `run(raw_data, request_headers)` with the body as a
UTF-8 string (GET: the query parameters as a JSON object string), `@rawhttp` `run(request)` with a
Flask request, or an `@input_schema` `run(**params)` with the JSON object's keys as arguments.
Routes `/`, `/score`, `/swagger.json`, their status codes, bodies and headers (request ids, 431,
x-ms-run-function-failed, x-ms-run-fn-exec-ms, x-ms-server-version) are azmlinfsrv's; its source
(server/routes.py, user_script.py, input_parsers.py) is the reference for every branch below.

Calls to the script run one at a time on the main thread, as in azmlinfsrv's one sync worker (`_Runner`):
probes wait while a slow `run` works, as they do there. Flask is imported only
for `@rawhttp` scripts and for scripts that return a Flask response (they imported it themselves).
"""

from __future__ import annotations

import codecs
import importlib.util
import inspect
import io
import json
import logging
import os
import signal
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any
from urllib.parse import parse_qsl, quote

from appliance.scoring import collect, contrib, monitoring
from appliance.scoring.script_swagger import ScriptSwagger, schema_util

log = logging.getLogger("azmlinfsrv.user_script")

RUN_FAILED = "An unexpected error occurred in scoring script. Check the logs for more info."
INTERNAL = "An unexpected internal error occurred. Check the logs for more info."
NOT_FOUND = ("The requested URL was not found on the server. If you entered the URL manually please check your "
             "spelling and try again.")
NOT_ALLOWED = "The method is not allowed for the requested URL."
HEADER_LIMIT = 100
SERVER_VERSION = "azmlinfsrv/1.5.1"  # the contract served, as azmlinfsrv announces itself by default
HTML = "text/html; charset=utf-8"
JSON = "application/json"
FAILED = "x-ms-run-function-failed"
_FRAMING = ("content-length", "transfer-encoding")
# The reply headers every answer carries, encoded once (others are encoded per answer).
_ENCODED = {(k, v): (k.encode("latin-1"), v.encode("latin-1")) for k, v in (
    ("Content-Type", JSON), ("Content-Type", HTML), (FAILED, "False"), (FAILED, "True"),
    ("x-ms-server-version", SERVER_VERSION))}
METHODS = {"/": {"GET", "HEAD", "OPTIONS"}, "/swagger.json": {"GET", "HEAD", "OPTIONS"},
           "/score": {"GET", "HEAD", "POST", "OPTIONS"}}

Headers = list[tuple[str, str]]
Reply = tuple[int, Headers, bytes]


def _keep_quoted(error: UnicodeError) -> tuple[str, int]:
    """Invalid UTF-8 in a query parameter stays percent-encoded (werkzeug's "werkzeug.url_quote")."""
    assert isinstance(error, UnicodeDecodeError)
    return quote(error.object[error.start:error.end], safe=""), error.end


codecs.register_error("appliance.url_quote", _keep_quoted)


class ScriptError(RuntimeError):
    """The script can't be served (import failed, init or run missing or malformed, init raised)."""


class _InputError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class ScriptScorer:
    def __init__(self, app_root: Path, entry_script: str) -> None:
        self.app_root = app_root
        self.path = app_root / entry_script
        sys.path.append(str(app_root))  # as azmlinfsrv: the script's folder is importable
        if os.environ.get("AZUREML_SOURCE_DIRECTORY"):
            sys.path.append(str(app_root / os.environ["AZUREML_SOURCE_DIRECTORY"]))
        try:
            self.timeout_ms = int(os.environ.get("SCORING_TIMEOUT_MS", 3600 * 1000))
        except ValueError:
            raise ScriptError(f"SCORING_TIMEOUT_MS={os.environ['SCORING_TIMEOUT_MS']!r} is not a whole number "
                              "of milliseconds") from None
        enabled = os.environ.get("SERVER_VERSION_LOG_RESPONSE_ENABLED", "true").lower() == "true"
        self.server_version = SERVER_VERSION if enabled else os.environ.get("HTTP_X_MS_SERVER_VERSION", "")
        contrib.install()
        monitoring.install()  # azureml-ai-monitoring's Collector, unless the script's environment has it
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
        # Some Azure SDKs generate a driver module that forwards to the real script: azmlinfsrv calls
        # the real script's run() directly (and the driver's init()).
        driver = getattr(module, "driver_module", None)
        self._run: Callable[..., Any] = driver.run if isinstance(driver, ModuleType) and hasattr(
            driver, "run") else module.run
        self._init: Callable[[], Any] = module.init
        self._analyze()
        self._runner = _Runner()
        self._flask: Any = None
        self.swagger: ScriptSwagger | None = None

    def _analyze(self) -> None:
        """How run() is called, with azmlinfsrv's rules (UserScript._analyze_run)."""
        params = list(inspect.signature(self._run).parameters.values())
        if any(p.kind not in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params):
            raise ScriptError("run() cannot accept positional-only arguments, *args, or **kwargs.")
        self._with_headers = any(p.name == "request_headers" for p in params)
        self._params = [p for p in params if p.name != "request_headers"]
        if not self._params:
            raise ScriptError('run() needs to accept an argument other than "request_headers".'
                              if self._with_headers else "run() needs to accept an argument for input data.")
        self.raw = contrib.rawhttp_requested()
        util = schema_util()
        self.schema = bool(util and util.is_schema_decorated(self._run))
        if self.raw and self.schema:
            raise ScriptError("run() cannot be decorated with both @rawhttp and @input_schema")
        if self.raw:
            log.info("run() is decorated with @rawhttp. Server will invoke it with the flask request object.")
        elif self.schema:
            log.info("run() is decorated with @input_schema. Server will invoke it with the following arguments: "
                     "%s.", ", ".join(p.name for p in self._params))
        else:
            log.info("run() is not decorated. Server will invoke it with the input in JSON string.")

    def init(self) -> None:
        try:
            self._init()
        except BaseException as exc:
            raise ScriptError(f"User's init function failed: init() of {self.path} raised:\n"
                              f"{traceback.format_exc()}") from exc
        try:
            self.swagger = ScriptSwagger(self.app_root, self._run)
        except Exception as exc:
            raise ScriptError(f"cannot prepare swagger.json:\n{traceback.format_exc()}") from exc
        if self.raw:
            import flask

            self._flask = flask.Flask(__name__)

    # -- HTTP ------------------------------------------------------------------------------

    def handle(self, scope: dict[str, Any], body: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """One request to `/`, `/score`, `/swagger.json` or any other path, answered as azmlinfsrv does."""
        status, headers, payload = self._route(scope, body)
        # The body's framing is the server's (server.py): a Flask response's own length is dropped.
        return status, [_ENCODED.get(h) or (h[0].encode("latin-1"), h[1].encode("latin-1")) for h in headers
                        if h[0].lower() not in _FRAMING], payload

    def _route(self, scope: dict[str, Any], body: bytes) -> Reply:
        method, path = scope["method"], scope["path"]
        if path not in METHODS:  # Flask's routing errors: no request ids on these
            return _error(404, NOT_FOUND)
        if method not in METHODS[path]:
            return _error(405, NOT_ALLOWED)
        headers = _joined(scope["headers"])
        request_id, legacy_id, client_id, refusal = _request_ids(headers)
        try:
            if refusal:
                status, out, payload = _error(431, refusal)
            elif path == "/score":
                status, out, payload = self._score(method, scope, headers, body, request_id)
            elif method == "OPTIONS":
                status, out, payload = 200, [("Content-Type", HTML), ("Allow", "GET, HEAD, OPTIONS")], b""
            elif path == "/":
                status, out, payload = 200, [("Content-Type", HTML)], b"Healthy"
            else:
                assert self.swagger is not None
                query = _query(scope["query_string"])
                status, document = self.swagger.get(query["version"][0] if "version" in query else "2")
                out, payload = [("Content-Type", JSON), (FAILED, "False")], json.dumps(document).encode()
        except Exception:  # azmlinfsrv's catch-all: e.g. undecodable JSON bytes, an unserializable answer
            log.error("Encountered Exception: %s", traceback.format_exc())
            status, out, payload = _error(500, INTERNAL)
        # azmlinfsrv's after_request: these replace whatever the script set.
        if self.server_version:
            out.append(("x-ms-server-version", self.server_version))
        ids = [(name, value) for name, value in (("x-request-id", request_id), ("x-ms-request-id", legacy_id),
                                                 ("x-ms-client-request-id", client_id)) if value]
        if ids:
            _set(out, *ids)
        if "traceid" in headers:
            out.append(("TraceId", headers["traceid"]))
        return status, out, payload

    def _score(self, method: str, scope: dict[str, Any], headers: dict[str, str], body: bytes,
                     request_id: str | None = None) -> Reply:
        def environ() -> dict[str, Any]:
            return _environ(scope, headers, body)

        if self.raw:
            wsgi = environ()

            def call() -> Any:
                with self._flask.request_context(wsgi), collect.serving(request_id):
                    return self._call({self._params[0].name: sys.modules["flask"].request}, headers)
        else:
            if method == "OPTIONS":
                return 200, [("Content-Type", HTML), (FAILED, "False")], b""
            if method == "HEAD":
                return _error(405, "Method not allowed")
            try:
                params = self._parse(method, scope["query_string"], headers, body)
            except _InputError as exc:
                return _error(exc.status, exc.message)

            def call() -> Any:
                with collect.serving(request_id):  # for azureml.ai.monitoring's Collector in run()
                    return self._call(params, headers)
        try:
            output, elapsed_ms = self._runner.call(call, self.timeout_ms / 1000 if self.timeout_ms > 0 else None)
        except TimeoutError:  # azmlinfsrv takes any TimeoutError out of run() for its timer's
            log.error("Encountered Exception: %s", traceback.format_exc())
            return _error(500, f"Scoring timeout after {self.timeout_ms} ms", run_failed=True)
        except Exception:
            log.error("Encountered Exception: %s", traceback.format_exc())
            return _error(500, RUN_FAILED, run_failed=True)
        reply = self._runner.convert(output, environ)
        reply[1].append(("x-ms-run-fn-exec-ms", f"{elapsed_ms:.3f}"))
        return reply

    def _call(self, params: dict[str, Any], headers: dict[str, str]) -> Any:
        if self._with_headers:
            return self._run(**params, request_headers=_request_headers(headers))
        return self._run(**params)

    def _parse(self, method: str, query: bytes, headers: dict[str, str], body: bytes) -> dict[str, Any]:
        """run()'s arguments from the request (azmlinfsrv's JsonStringInput and ObjectInput)."""
        if method == "GET":
            values = {k: _json_or_str(v[0]) if len(v) == 1 else [_json_or_str(x) for x in v]
                      for k, v in _query(query).items()}
            return self._extract(values) if self.schema else {self._params[0].name: json.dumps(values)}
        if not self.schema:
            try:
                return {self._params[0].name: str(body, "utf-8")}
            except UnicodeDecodeError as exc:
                raise _InputError(400, f"Input cannot be decoded as UTF-8: {exc}") from None
        mimetype = headers.get("content-type", "").split(";")[0].strip().lower()
        if not (mimetype == JSON or (mimetype.startswith("application/") and mimetype.endswith("+json"))):
            raise _InputError(415, "Expects Content-Type to be application/json")
        try:
            value = json.loads(body)
        except json.JSONDecodeError as exc:
            raise _InputError(400, f"POST body could not be decoded as JSON: {exc}" if body
                              else "POST body is empty. Expecting a JSON dictionary.") from None
        if not isinstance(value, dict):
            raise _InputError(400, "POST body should be a JSON dictionary.")
        return self._extract(value)

    def _extract(self, body: dict[str, Any]) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for p in self._params:
            value = body.get(p.name, p.default)
            if value is inspect.Parameter.empty:
                raise _InputError(400, f"A value is not provided for the {p.name!r} parameter.")
            params[p.name] = value
        return params


class _Runner:
    """Runs the script's code where azmlinfsrv's one sync gunicorn worker runs it: on the main thread, one
    call at a time, with SCORING_TIMEOUT_MS as its SIGALRM timer, which raises TimeoutError inside the call
    (a blocking time.sleep included); what the call does with it is the answer. The event loop waits
    meanwhile, as that worker does: a hop to a thread and back cost ~120 µs of CPU a request (measured
    in the worker under load), more than the rest of the worker's own work."""

    def __init__(self) -> None:
        self._running = False
        signal.signal(signal.SIGALRM, self._alarm)

    def _alarm(self, signum: int, frame: FrameType | None) -> None:
        if self._running:  # an alarm that comes after the call is over is dropped
            raise TimeoutError

    def call(self, fn: Callable[[], Any], timeout: float | None) -> tuple[Any, float]:
        """(fn(), elapsed ms), or what fn raised."""
        started = time.perf_counter()
        self._running = True
        if timeout:
            signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            return fn(), (time.perf_counter() - started) * 1000
        finally:
            if timeout:
                signal.setitimer(signal.ITIMER_REAL, 0)
            self._running = False

    def convert(self, output: Any, environ: Callable[[], dict[str, Any]]) -> Reply:
        """run()'s answer as an HTTP reply: a Flask response as it is (its body may be a generator of the
        script's), anything else JSON-encoded."""
        flask = sys.modules.get("flask")
        if flask is None or not isinstance(output, flask.Response):
            return 200, [("Content-Type", JSON), (FAILED, "False")], json.dumps(output).encode()
        return _from_response(output, environ())


def _from_response(response: Any, environ: dict[str, Any]) -> Reply:
    app_iter, status, headers = response.get_wsgi_response(environ)
    try:
        payload = b"".join(app_iter)
    finally:
        if hasattr(app_iter, "close"):
            app_iter.close()
    code = int(status.split(" ", 1)[0])
    if code >= 500:
        _set(headers, (FAILED, "True"))
    return code, headers, payload


def _error(status: int, message: str, run_failed: bool = False) -> Reply:
    """azmlinfsrv's ErrorResponse."""
    return status, [("Content-Type", JSON), (FAILED, str(run_failed))], json.dumps({"message": message}).encode()


def _set(headers: Headers, *pairs: tuple[str, str]) -> None:
    """These headers, replacing any of the same names (whatever their case), in one pass."""
    names = {name.lower() for name, _ in pairs}
    headers[:] = [h for h in headers if h[0].lower() not in names]
    headers += pairs


def _joined(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """Request headers as gunicorn hands them to azmlinfsrv: names with an underscore dropped,
    repeated ones joined with ","; keyed by lower-case name."""
    headers: dict[str, str] = {}
    for k, v in raw:  # names come lower-cased (server.py), as ASGI's do
        name, value = k.decode("latin-1"), v.decode("latin-1")
        if "_" not in name:
            headers[name] = f"{headers[name]},{value}" if name in headers else value
    return headers


def _request_headers(headers: dict[str, str]) -> dict[str, str]:
    """`request_headers` as run() gets it: dict(flask.request.headers)."""
    return {k.title(): v for k, v in headers.items() if v or k not in ("content-type", "content-length")}


def _request_ids(headers: dict[str, str]) -> tuple[str, str, str, str | None]:
    """(x-request-id, x-ms-request-id, x-ms-client-request-id, refusal) by azmlinfsrv's rules: x-ms-request-id
    is the legacy client request id, filled from the client id or the request id when not sent."""
    request_id = headers["x-request-id"] if "x-request-id" in headers else str(uuid.uuid4())
    if len(request_id) > HEADER_LIMIT:
        return "", "", "", f"x-request-id must not exceed {HEADER_LIMIT} characters"
    legacy = headers.get("x-ms-request-id", "")
    client = headers.get("x-ms-client-request-id", "")
    if legacy:
        client = client or legacy
    else:
        legacy = client or request_id
    if len(legacy) > HEADER_LIMIT or len(client) > HEADER_LIMIT:
        return request_id, "", "", (f"x-ms-request-id and x-ms-client-request-id must not exceed {HEADER_LIMIT} "
                                    "characters")
    return request_id, legacy, client, None


def _query(query_string: bytes) -> dict[str, list[str]]:
    """The query parameters as werkzeug parses them (request.args), values grouped by name."""
    grouped: dict[str, list[str]] = {}
    for k, v in parse_qsl(query_string.decode(), keep_blank_values=True, errors="appliance.url_quote"):
        grouped.setdefault(k, []).append(v)
    return grouped


def _json_or_str(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


def _environ(scope: dict[str, Any], headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """The WSGI environ gunicorn would build for this request, for the script's Flask request."""
    server = scope.get("server") or ("localhost", 80)
    name, _, port = headers.get("host", f"{server[0]}:{server[1] or 80}").partition(":")
    client = scope.get("client") or ("", 0)
    path = scope["path"].encode().decode("latin-1")
    query = scope["query_string"].decode("latin-1")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"], "SCRIPT_NAME": "", "PATH_INFO": path, "QUERY_STRING": query,
        "RAW_URI": path + (f"?{query}" if query else ""), "SERVER_PROTOCOL": f"HTTP/{scope['http_version']}",
        "SERVER_NAME": name, "SERVER_PORT": port or "80", "REMOTE_ADDR": client[0], "REMOTE_PORT": str(client[1]),
        "wsgi.version": (1, 0), "wsgi.url_scheme": scope.get("scheme", "http"), "wsgi.input": io.BytesIO(body),
        "wsgi.input_terminated": True, "wsgi.errors": sys.stderr, "wsgi.multithread": False,
        "wsgi.multiprocess": False, "wsgi.run_once": False,
    }
    for k, v in headers.items():
        key = k.upper().replace("-", "_")
        environ[key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}"] = v
    return environ
