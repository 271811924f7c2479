"""`appliance up`: assemble the parts, restore state, serve until SIGINT/SIGTERM, shut down cleanly."""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import errno
import gc
import logging
import logging.handlers
import os
import queue
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import uvicorn

from appliance import children
from appliance.builder import images
from appliance.daemon.api import create_app
from appliance.daemon.asgi import Dispatcher
from appliance.daemon.batch_rest import BatchRest
from appliance.daemon.connections import Limits, connection_cap, protocol_class, raise_fd_limit
from appliance.daemon.control import Control
from appliance.daemon.reload import HotReload
from appliance.home import Home, HomeBusy
from appliance.registry import Registry
from appliance.registry.requestlog import RequestLogStore
from appliance.registry.sealed import SealError
from appliance.router import DataPlane, RoutingTable
from appliance.runtime import Supervisor
from appliance.runtime.container import remove_orphans
from appliance.telemetry import monitor
from appliance.telemetry.prometheus import Metrics
from appliance.telemetry.requestlog import RequestLog

log = logging.getLogger("appliance")


def _logging(home: Home) -> None:
    """The daemon's log lines go to stderr and `daemon.log` from a thread of their own: a write that the
    kernel holds back (a busy disk, a slow terminal) must not hold up the event loop."""
    home.logs.mkdir(parents=True, exist_ok=True)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handlers = (logging.StreamHandler(sys.stderr), logging.FileHandler(home.logs / "daemon.log"))
    for handler in handlers:
        handler.setFormatter(fmt)
    lines: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    writer = logging.handlers.QueueListener(lines, *handlers)
    writer.start()
    atexit.register(writer.stop)  # writes what is still queued
    logging.getLogger("appliance").addHandler(logging.handlers.QueueHandler(lines))
    logging.getLogger("appliance").setLevel(logging.INFO)


def listen(host: str, port: int) -> socket.socket:
    """The daemon's listening socket, bound before anything is restored (as uvicorn would bind it)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)  # from here on, connections wait in the backlog until the daemon serves
    except BaseException:
        sock.close()
        raise
    return sock


def cannot_listen(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return (f"error: port {port} on {host} is already in use (another appliance daemon, or another "
                f"server); stop it, or choose another port with --port")
    return f"error: cannot listen on {host}:{port}: {exc.strerror or exc}; choose another with --port or --host"


class _Server(uvicorn.Server):
    """Says it serves once it does: after the lifespan startup (the restore) and the listeners are up."""

    def __init__(self, config: uvicorn.Config, on_serving: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_serving = on_serving

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and not self.should_exit:
            self._on_serving()


def default_max_instances() -> int:
    """Instances a deployment may ask for unless `up --max-instances` says otherwise: what this machine
    can run side by side (each is a process, or a model session in the daemon)."""
    return 4 * (os.cpu_count() or 1)


def serve(root: Path, host: str = "127.0.0.1", port: int = 8080, max_request_bytes: int = 1_572_864,
          request_log: bool = True, request_log_retention: float | None = None, watch: bool = False,
          runtime: str | None = None, base_image: str = images.DEFAULT_BASE, limits: Limits | None = None,
          max_instances: int | None = None, request_log_max_bytes: int | None = None,
          metrics_open: bool = False) -> int:
    home = Home(root)
    try:
        home.lock()
    except HomeBusy as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:  # before anything is opened or restored: a port in use is one line, not a half-started daemon
        sock = listen(host, port)
    except OSError as exc:
        print(cannot_listen(host, port, exc), file=sys.stderr)
        home.release()
        return 1
    port = sock.getsockname()[1]  # --port 0: the one the system gave
    # Owner only, from here on: what this daemon creates in the home (DuckDB re-creates its WAL at every
    # checkpoint; logs), and what an earlier version left 0755/0644. Artifacts keep their sources' modes
    # (the store copies them), so containers' non-root users still read them; build contexts are read
    # as root by the image build. Child processes (instances, pip) inherit it too.
    os.umask(0o077)
    home.tighten()
    _logging(home)
    token = home.admin_token()
    try:
        registry = Registry(home.root, home.secret_key())
    except (SealError, ValueError) as exc:  # a wrong key, or a secrets.key that holds none
        print(f"error: {exc}", file=sys.stderr)
        sock.close()
        home.release()
        return 1
    run_dir = Path(tempfile.mkdtemp(prefix="appliance-"))  # short: Unix socket paths max out at 107 bytes
    # What a killed daemon on this home left (workers, builds, half-built venvs, its run folder) goes;
    # this one's children are recorded from here on.
    records = children.Children(home.root / "run")
    if left := records.claim(run_dir, home.root / "envs"):
        log.info("removed what an earlier daemon on this home left behind: %s", left)
    children.use(records)
    supervisor = Supervisor(run_dir, home.logs, home=str(home.root))
    table = RoutingTable()
    control = Control(registry, supervisor, table, home.signing_key(), runtime, base_image,
                      max_instances=max_instances or default_max_instances())
    requests = RequestLog(RequestLogStore(registry), retention=request_log_retention,
                          max_bytes=request_log_max_bytes)
    dataplane = DataPlane(table, requests if request_log else None, max_request_bytes)
    reload = HotReload(control, everything=watch)
    control.listeners.append(reload.sync)
    base_url = f"http://{'localhost' if host in ('127.0.0.1', '0.0.0.0') else host}:{port}"

    collected_retention = monitor.Retention(home.root, request_log_retention)  # collected data: the log's retention

    async def startup() -> None:
        requests.start()
        collected_retention.start()
        with contextlib.suppress(images.DockerUnavailable):  # no engine: nothing of ours can be running there
            if removed := remove_orphans(supervisor.engine, str(home.root)):
                log.info("removed %d container(s) left behind by an earlier daemon on this home", removed)
        await control.restore()
        await control.jobs.resume()  # jobs a stopped daemon left unfinished run on from their ledgers
        control.monitors.start()  # monitors due while the daemon was down run now, once each
        # What exists now (frameworks, models, the registry) lives as long as the daemon: out of the
        # collector's sight, a full collection no longer walks it (measured: 60-90 ms pauses, a few a
        # minute under load, each one a latency spike for every request in flight).
        gc.freeze()

    def serving() -> None:
        home.announce(base_url)
        log.info("serving %s (home %s); endpoints at %s/endpoints/<name>/score", base_url, home.root, base_url)

    async def shutdown() -> None:
        log.info("shutting down: stopping instances")
        await reload.close()
        await collected_retention.stop()
        await control.monitors.stop()
        await control.jobs.shutdown()  # unfinished jobs stay so in the ledger: the next daemon resumes them
        await dataplane.drain(timeout=5)
        await supervisor.stop_all()
        requests.close()  # every request logged so far reaches the database
        registry.close()
        records.release()
        home.release()
        shutil.rmtree(run_dir, ignore_errors=True)
        log.info("stopped")

    app = create_app(control, requests, dataplane, base_url, [startup], [shutdown])
    limits = limits or Limits()
    limits = dataclasses.replace(limits, max_connections=connection_cap(limits.max_connections, raise_fd_limit()))
    dispatcher = Dispatcher(app, dataplane, token, host, port, BatchRest(control, token),
                            Metrics(dataplane, supervisor, requests), metrics_open)
    config = uvicorn.Config(dispatcher, host=host, port=port, lifespan="on", http=protocol_class(limits),
                            loop="uvloop", access_log=False,
                            # uvicorn annotates an int, but only hands it to loop.call_later: a float works
                            timeout_keep_alive=limits.keepalive_timeout,  # type: ignore[arg-type]
                            log_level="warning", timeout_graceful_shutdown=10, server_header=False,
                            date_header=False, proxy_headers=False)
    server = _Server(config, serving)
    # uvicorn re-raises SIGINT/SIGTERM after its graceful shutdown, so the process would die by the
    # signal; with these (restored by uvicorn afterwards) a clean stop exits 0 instead.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        children.use(None)
        home.release()
        shutil.rmtree(run_dir, ignore_errors=True)
    return 0 if server.started else 1
