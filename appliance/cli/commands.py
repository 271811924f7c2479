"""Top-level verbs: `up` (the daemon), `apply`, `request-log`, `package`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from appliance.cli import output
from appliance.cli.common import WAIT, Command, client, duration, follow_stream, reporting
from appliance.cli.output import emit, output_option


@click.command(cls=Command)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--home", "home_dir", help="State folder (default $APPLIANCE_HOME or ~/.appliance).")
@click.option("--headless", is_flag=True, help="Serve without the terminal UI.")
@click.option("--max-request-mb", default=1.5, show_default=True, type=click.FloatRange(0.001),
              help="Larger request bodies get 413 (Azure's managed endpoints stop at 1.5 MB).")
@click.option("--request-log/--no-request-log", default=True, show_default=True,
              help="Record every request in the registry (endpoint logs, metrics, mirror-report).")
@click.option("--request-log-retention", default="7d", show_default=True,
              help="Delete logged requests older than this (30m, 12h, 7d), or keep them all: forever.")
@click.option("--watch", is_flag=True, help="Hot reload: replace a deployment's instances when its code changes.")
@click.option("--runtime", type=click.Choice(["process", "docker"]),
              help="Where deployments without a `runtime:` field run (default: no-code ONNX models inside the "
                   "daemon, everything else as child processes).")
@click.option("--base-image", envvar="APPLIANCE_BASE_IMAGE", default="python:3.11-slim", show_default=True,
              help="Base of the environment images the docker runtime builds.")
@click.option("--request-log-max-mb", default=1024.0, show_default=True, type=click.FloatRange(1),
              help="The request log's size cap: past it the writer deletes the oldest requests.")
@click.option("--max-instances", type=click.IntRange(1, 10_000),
              help="Most instances one deployment may ask for (default: 4 x CPUs).")
@click.option("--max-connections", default=4096, show_default=True, type=click.IntRange(16, 1_000_000),
              help="Open connections; past it the one idle longest is closed (503 when none is idle).")
@click.option("--header-timeout", default=10.0, show_default=True, type=click.FloatRange(0.1, 3600),
              help="Seconds for a request's line and headers to arrive (then 408).")
@click.option("--body-timeout", default=30.0, show_default=True, type=click.FloatRange(0.1, 3600),
              help="Seconds for a request's body to arrive once its headers have (then 408).")
@click.option("--keepalive-timeout", default=5.0, show_default=True, type=click.FloatRange(0.1, 3600),
              help="Seconds an idle connection stays open between requests.")
@click.option("--metrics-open", is_flag=True,
              help="Serve GET /metrics (Prometheus) without the admin token; it holds no secrets.")
@click.pass_context
def up(ctx: click.Context, host: str, port: int, home_dir: str | None, headless: bool, max_request_mb: float,
       request_log: bool, request_log_retention: str, watch: bool, runtime: str | None, base_image: str,
       request_log_max_mb: float, max_instances: int | None, max_connections: int, header_timeout: float,
       body_timeout: float, keepalive_timeout: float, metrics_open: bool) -> None:
    """Start the daemon: control API and data plane in one process; state survives restarts."""
    from appliance.daemon.connections import Limits
    from appliance.daemon.server import serve
    from appliance.home import resolve

    retention = None if request_log_retention == "forever" else duration(request_log_retention,
                                                                          "--request-log-retention")
    limits = Limits(header_timeout=header_timeout, body_timeout=body_timeout, keepalive_timeout=keepalive_timeout,
                    max_connections=max_connections)
    home = home_dir or ctx.find_root().meta.get("appliance.home") or (ctx.find_root().obj or {}).get("home")
    args = (resolve(home), host, port, int(max_request_mb * 1024 * 1024), request_log, retention, watch, runtime,
            base_image, limits, max_instances, int(request_log_max_mb * 1024 * 1024))
    if headless or not (sys.stdin.isatty() and sys.stdout.isatty()):
        sys.exit(serve(*args, metrics_open=metrics_open))
    sys.exit(_serve_with_tui(resolve(home)))


def _serve_with_tui(home: Path) -> int:
    """The daemon as a child process (`up --headless` with the same options), the terminal UI here,
    attached to it. Two processes, not threads of one: the UI's rendering would share the data plane's
    GIL (measured: -26% to -34% req/s with it in the daemon's process, -3% from its own). Quitting the UI
    asks whether to stop the daemon; if not, it keeps serving in the foreground until Ctrl-C or SIGTERM.
    The daemon gets SIGTERM should this process die, so it never outlives its terminal unseen."""
    import signal
    import subprocess
    import tempfile

    command = [sys.executable] if getattr(sys, "frozen", False) else [sys.executable, "-m", "appliance.cli.main"]
    # what the daemon says before it logs to daemon.log (a port in use ...), shown if it doesn't start
    with tempfile.TemporaryFile() as console:
        child = subprocess.Popen([*command, *sys.argv[1:], "--headless"], stdin=subprocess.DEVNULL, stdout=console,
                                 stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent)
        client = _attach(child, home)
        if client is None:
            console.seek(0)
            output.fail(console.read().decode(errors="replace").strip()
                        or f"the daemon exited with status {child.returncode}")
            return child.returncode or 1

    def stop(*_: Any) -> None:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)

    app = _tui_app()(client, embedded=True)

    def terminate(*_: Any) -> None:  # SIGTERM while the UI runs: stop both
        stop()
        app.call_later(app.exit, "stop")

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        answer = app.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
    if answer == "keep" and child.poll() is None:
        for sig in (signal.SIGINT, signal.SIGTERM):  # before the note: a Ctrl-C right after it stops cleanly
            signal.signal(sig, stop)
        output.note(f"the terminal UI closed; the daemon keeps serving headless at {client.url} (Ctrl-C stops it; "
                    "`appliance tui` attaches again)")
    else:
        stop()
    return child.wait()


def _attach(child: Any, home: Path) -> Any:
    """A client of the daemon `child` once it serves (it announces itself in the home), or None if it exited."""
    import time

    from appliance import home as homes
    from appliance.client import ApiError, Client

    while child.poll() is None:
        announced = homes.read_daemon_file(home)
        if announced and announced.get("pid") == child.pid:
            client = Client(url=announced["url"].replace("localhost", "127.0.0.1"), home=home, timeout=30.0)
            try:
                client.health()
                return client
            except ApiError:
                pass
        time.sleep(0.05)
    return None


def _die_with_parent() -> None:
    """In the daemon child, before it runs: SIGTERM (a clean shutdown) when the UI's process dies."""
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # 1: PR_SET_PDEATHSIG


def _tui_app() -> Any:
    """The TUI's app class, loaded by name: the CLI is where the UI starts, yet `appliance` itself never
    imports `tui` (the import-linter contract), so the daemon and the CLI's other commands run without it."""
    import importlib

    return importlib.import_module("tui.app").ApplianceApp


@click.command(cls=Command)
@click.option("--url", "url", help="Daemon URL (default $APPLIANCE_URL, or the one serving --home).")
@click.option("--home", "home_dir", help="State folder (default $APPLIANCE_HOME or ~/.appliance).")
@click.pass_context
def tui(ctx: click.Context, url: str | None, home_dir: str | None) -> None:
    """The terminal UI, attached to a running daemon (`appliance up` starts one with it)."""
    from appliance.client import Client

    ApplianceApp = _tui_app()
    root = ctx.find_root()
    url = url or root.meta.get("appliance.url") or (root.obj or {}).get("url")
    home = home_dir or root.meta.get("appliance.home") or (root.obj or {}).get("home")
    ApplianceApp(Client(url=url, home=home, timeout=30.0)).run()


@click.command(cls=Command)
@click.option("-f", "--file", "files", multiple=True, required=True, type=click.Path(dir_okay=False),
              help="Azure ML CLI v2 YAML (model, environment, online endpoint, online deployment); repeatable.")
@click.option("--no-wait", is_flag=True, help="Return at once, without waiting for deployments to be ready.")
@output_option()
@click.pass_context
def apply(ctx: click.Context, files: tuple[str, ...], no_wait: bool, fmt: str, query: str | None) -> None:
    """Create or update everything in FILES, in dependency order; all or nothing."""
    from appliance.cli.online_deployment import report_apply
    from appliance.client import documents_from_files

    with reporting():
        result = follow_stream(client(ctx).apply_streamed(documents_from_files(list(files)),
                                                          wait=0 if no_wait else WAIT))
    report_apply(result, fmt, not no_wait, query)


@click.command("request-log", cls=Command)
@click.argument("switch", required=False, type=click.Choice(["on", "off"]))
@output_option()
@click.pass_context
def request_log(ctx: click.Context, switch: str | None, fmt: str, query: str | None) -> None:
    """Whether the daemon logs requests, and how many it wrote, has waiting, dropped and failed to write.
    `on` or `off` switches it until the daemon stops (`up --no-request-log` starts it off)."""
    with reporting():
        emit(client(ctx).request_log(None if switch is None else switch == "on"), fmt, None, query)


@click.command(cls=Command)
@click.argument("positional", nargs=-1, metavar="[ENDPOINT NAME]")
@click.option("-e", "--endpoint-name", "--endpoint", "endpoint", help="The endpoint's name.")
@click.option("-n", "--name", "name", help="The deployment's name.")
@click.option("--push", help="Also push to REGISTRY/REPO (same tag); then the repo digest is printed too.")
@output_option()
@click.pass_context
def package(ctx: click.Context, positional: tuple[str, ...], endpoint: str | None, name: str | None,
            push: str | None, fmt: str, query: str | None) -> None:
    """Bake a deployment's model and code into a self-contained image (Azure's Model.package);
    it serves /score and /v2 on its own: docker run -p 127.0.0.1:8080:8080 IMAGE. Prints the image to run:
    its tag (the image id on stderr), or after --push the pushed REPO@sha256 digest."""
    from appliance.cli.common import endpoint_and_name

    endpoint, name = endpoint_and_name(positional, endpoint, name)
    with reporting():
        result = follow_stream(client(ctx).package(endpoint, name, push))
    if fmt == "table" and not query:
        click.echo(result["reference"])
        output.note(f"image {result['image']} (id {result['id']})")
        output.hint(f"next: docker run --rm -p 127.0.0.1:8080:8080 {result['reference']}")
    else:
        emit(result, fmt, None, query)
