"""The `appliance` command: click groups that parse, call the client and print."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

import appliance
from appliance.cli import output
from appliance.cli.output import Column, emit, output_option
from appliance.client import ApiError, Client, documents_from_files
from appliance.specs import SpecError, set_field
from appliance.specs.traffic import parse_assignments


class DefaultGroup(click.Group):
    """`appliance` with no command behaves like `appliance up`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0].startswith("-") and args[0] not in ("--help", "-h", "--version")):
            args = ["up", *args]
        return super().parse_args(ctx, args)


WAIT = 1800  # s: how long apply and deployment create/update wait for a deployment to be ready or failed


@contextmanager
def reporting() -> Iterator[None]:
    """Errors from the daemon or from bad input: one clear line on stderr, a non-zero exit."""
    try:
        yield
    except ApiError as exc:
        output.fail(exc.message)
        sys.exit(1 if exc.status else 3)
    except SpecError as exc:
        output.fail(str(exc))
        sys.exit(2)


def client(ctx: click.Context) -> Client:
    return Client(url=ctx.obj.get("url"), home=ctx.obj.get("home"))


@click.group(cls=DefaultGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--home", envvar="APPLIANCE_HOME", help="State folder (default ~/.appliance).")
@click.option("--url", envvar="APPLIANCE_URL", help="Daemon URL (default: the one serving --home).")
@click.version_option(appliance.__version__, prog_name="appliance")
@click.pass_context
def cli(ctx: click.Context, home: str | None, url: str | None) -> None:
    """Azure ML online endpoints and deployments on this machine."""
    ctx.obj = {"home": home, "url": url}


@cli.command()
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
@click.pass_context
def up(ctx: click.Context, host: str, port: int, home_dir: str | None, headless: bool, max_request_mb: float,
       request_log: bool, request_log_retention: str, watch: bool, runtime: str | None, base_image: str,
       request_log_max_mb: float, max_instances: int | None, max_connections: int, header_timeout: float,
       body_timeout: float, keepalive_timeout: float) -> None:
    """Start the daemon: control API and data plane in one process; state survives restarts."""
    from appliance.daemon.connections import Limits
    from appliance.daemon.server import serve
    from appliance.home import resolve

    retention = None if request_log_retention == "forever" else duration(request_log_retention,
                                                                          "--request-log-retention")
    if not headless and sys.stdout.isatty():
        output.note("the terminal UI is not part of this build yet; serving headless (Ctrl-C stops)")
    limits = Limits(header_timeout=header_timeout, body_timeout=body_timeout, keepalive_timeout=keepalive_timeout,
                    max_connections=max_connections)
    sys.exit(serve(resolve(home_dir or ctx.obj["home"]), host, port, int(max_request_mb * 1024 * 1024),
                   request_log, retention, watch, runtime, base_image, limits=limits, max_instances=max_instances,
                   request_log_max_bytes=int(request_log_max_mb * 1024 * 1024)))


@cli.command()
@click.option("-f", "--file", "files", multiple=True, required=True, type=click.Path(dir_okay=False),
              help="Azure ML CLI v2 YAML (model, environment, online endpoint, online deployment); repeatable.")
@click.option("--no-wait", is_flag=True, help="Return at once, without waiting for deployments to be ready.")
@output_option
@click.pass_context
def apply(ctx: click.Context, files: tuple[str, ...], no_wait: bool, fmt: str) -> None:
    """Create or update everything in FILES, in dependency order; all or nothing."""
    with reporting():
        result = follow_stream(client(ctx).apply_streamed(documents_from_files(list(files)),
                                                          wait=0 if no_wait else WAIT))
    report_apply(result, fmt, not no_wait)


def report_apply(result: dict[str, Any], fmt: str, waited: bool) -> None:
    """What was applied; exits 1 when a deployment failed or, waited for, is not ready (as `az ml` does)."""
    for warning in result["warnings"]:
        output.warn(warning)
    if fmt != "table":
        emit(result, fmt)
    else:
        for item in result["applied"]:
            if item["kind"] == "traffic":
                shares = ", ".join(f"{k}={v}" for k, v in item["traffic"].items())
                output.note(f"endpoint {item['name']}: traffic {shares}")
                continue
            version = f":{item['version']}" if "version" in item else ""
            where = f" on {item['endpoint']}" if "endpoint" in item else ""
            output.note(f"{item['kind'].replace('_', ' ')} {item['name']}{version}{where} applied")
        for dep in result["deployments"]:
            output.note(f"deployment {dep['endpoint_name']}/{dep['name']}: {dep['provisioning_state']}"
                        + (f" on {dep['provider']}" if dep.get("provider") else ""))
    not_ready = [dep for dep in result["deployments"]
                 if dep["provisioning_state"] == "Failed" or (waited and dep["provisioning_state"] != "Succeeded")]
    for dep in not_ready:
        why = dep.get("error") or f"still {dep['provisioning_state']} after {WAIT} s"
        output.fail(f"deployment {dep['endpoint_name']}/{dep['name']} is {dep['provisioning_state']}: {why}")
    if not_ready:
        sys.exit(1)


# -- models ------------------------------------------------------------------------------------

MODEL_COLUMNS = [("NAME", lambda m: m["name"]), ("VERSION", lambda m: m["version"]),
                 ("FRAMEWORK", lambda m: m["framework"]), ("DIGEST", lambda m: m["digest"][:12]),
                 ("CREATED", lambda m: m["created_at"])]


@cli.command("request-log")
@click.argument("switch", required=False, type=click.Choice(["on", "off"]))
@output_option
@click.pass_context
def request_log(ctx: click.Context, switch: str | None, fmt: str) -> None:
    """Whether the daemon logs requests, and how many it wrote, has waiting, dropped and failed to write.
    `on` or `off` switches it until the daemon stops (`up --no-request-log` starts it off)."""
    with reporting():
        emit(client(ctx).request_log(None if switch is None else switch == "on"), fmt)


@cli.group()
def model() -> None:
    """Registered models."""


@model.command("create")
@click.option("--name", required=True)
@click.option("--path", required=True, type=click.Path(exists=True), help="A model file or folder.")
@click.option("--version", help="Default: the next number.")
@click.option("--framework", type=click.Choice(["onnx", "custom"]), help="Default: onnx for a .onnx file.")
@click.option("--description", default="")
@click.option("--tag", "tags", multiple=True, help="key=value; repeatable.")
@output_option
@click.pass_context
def model_create(ctx: click.Context, name: str, path: str, version: str | None, framework: str | None,
                 description: str, tags: tuple[str, ...], fmt: str) -> None:
    """Register a model; the same files registered again are stored once."""
    body: dict[str, Any] = {"$schema": "model.schema.json", "name": name, "path": str(Path(path).resolve()),
                            "description": description, "tags": _pairs(tags, "--tag")}
    if version:
        body["version"] = version
    if framework:
        body["framework"] = framework
    with reporting():
        emit(client(ctx).create_model(body), fmt)


@model.command("list")
@click.option("--name", help="Only this model's versions.")
@output_option
@click.pass_context
def model_list(ctx: click.Context, name: str | None, fmt: str) -> None:
    with reporting():
        emit(client(ctx).list_models(name), fmt, MODEL_COLUMNS)


@model.command("show")
@click.argument("name")
@click.option("--version", help="Default: the latest.")
@output_option
@click.pass_context
def model_show(ctx: click.Context, name: str, version: str | None, fmt: str) -> None:
    with reporting():
        emit(client(ctx).get_model(name, version), fmt)


# -- environments ------------------------------------------------------------------------------

@cli.group()
def environment() -> None:
    """Registered environments."""


@environment.command("list")
@output_option
@click.pass_context
def environment_list(ctx: click.Context, fmt: str) -> None:
    with reporting():
        emit(client(ctx).list_environments(), fmt,
             [("NAME", lambda e: e["name"]), ("VERSION", lambda e: e["version"]),
              ("IMAGE", lambda e: e["spec"].get("image")), ("DIGEST", lambda e: e["digest"][:12])])


@environment.command("build")
@click.argument("name")
@output_option
@click.pass_context
def environment_build(ctx: click.Context, name: str, fmt: str) -> None:
    """Build NAME[:VERSION] into an image (docker); unchanged environments are a cache hit."""
    env_name, _, version = name.partition(":")
    with reporting():
        result = follow_stream(client(ctx).build_environment(env_name, version or None))
    emit(result, fmt)


def follow_stream(events: Any) -> dict[str, Any]:
    """Progress lines to stderr as they come; the result, or a failure with its message."""
    for event in events:
        if "log" in event:
            output.progress(event["log"])
        elif "error" in event:
            raise ApiError(event["error"], 400)
        else:
            return event["result"]
    raise ApiError("the daemon ended the stream without a result", 500)


@environment.command("show")
@click.argument("name")
@click.option("--version")
@output_option
@click.pass_context
def environment_show(ctx: click.Context, name: str, version: str | None, fmt: str) -> None:
    with reporting():
        emit(client(ctx).get_environment(name, version), fmt)


# -- endpoints ---------------------------------------------------------------------------------

ENDPOINT_COLUMNS = [("NAME", lambda e: e["name"]), ("AUTH", lambda e: e["auth_mode"]),
                    ("TRAFFIC", lambda e: e["traffic"]), ("MIRROR", lambda e: e["mirror_traffic"]),
                    ("SCORING URI", lambda e: e["scoring_uri"])]


@cli.group()
def endpoint() -> None:
    """Online endpoints."""


@endpoint.command("create")
@click.option("-f", "--file", "file", type=click.Path(dir_okay=False), help="Endpoint YAML.")
@click.option("--name", help="Overrides the file's name.")
@click.option("--auth-mode", type=click.Choice(["key", "aml_token", "aad_token"]))
@output_option
@click.pass_context
def endpoint_create(ctx: click.Context, file: str | None, name: str | None, auth_mode: str | None,
                    fmt: str) -> None:
    """Create an online endpoint (fails if it exists; `apply` updates)."""
    with reporting():
        docs = documents_from_files([file]) if file else [{"body": {}, "source": "<command line>",
                                                           "base": os.getcwd()}]
        body = docs[0]["body"]
        body["$schema"] = "managedOnlineEndpoint.schema.json"
        if name:
            body["name"] = name
        if auth_mode:
            body["auth_mode"] = auth_mode
        if "name" not in body:
            raise SpecError("give the endpoint a name (--name or name: in the file)", field="name")
        c = client(ctx)
        c.apply(docs, create_only=True)
        emit(c.get_endpoint(body["name"]), fmt)
    output.note(f"next: appliance deployment create -f <deployment.yml> --endpoint-name {body['name']}")


@endpoint.command("list")
@output_option
@click.pass_context
def endpoint_list(ctx: click.Context, fmt: str) -> None:
    with reporting():
        emit(client(ctx).list_endpoints(), fmt, ENDPOINT_COLUMNS)


@endpoint.command("show")
@click.argument("name")
@output_option
@click.pass_context
def endpoint_show(ctx: click.Context, name: str, fmt: str) -> None:
    with reporting():
        emit(client(ctx).get_endpoint(name), fmt)


@endpoint.command("delete")
@click.argument("name")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def endpoint_delete(ctx: click.Context, name: str, yes: bool) -> None:
    """Delete an endpoint and all its deployments."""
    if not yes:
        if not sys.stdin.isatty():
            output.fail("deleting an endpoint deletes its deployments; pass --yes to confirm")
            sys.exit(2)
        click.confirm(f"Delete endpoint {name} and all its deployments?", abort=True, err=True)
    with reporting():
        client(ctx).delete_endpoint(name)
    output.note(f"endpoint {name} deleted")


@endpoint.command("get-credentials")
@click.argument("name")
@click.option("--query", type=click.Choice(["primaryKey", "secondaryKey"]), help="Print just this key.")
@output_option
@click.pass_context
def endpoint_credentials(ctx: click.Context, name: str, query: str | None, fmt: str) -> None:
    """The endpoint's primary and secondary keys."""
    with reporting():
        keys = client(ctx).get_credentials(name)
    if query:
        click.echo(keys[query])
    else:
        emit(keys, "json" if fmt == "table" else fmt)


@endpoint.command("update")
@click.argument("name")
@click.option("--traffic", help='Live traffic: "blue=90,green=10" (or Azure\'s "blue=90 green=10").')
@click.option("--mirror-traffic", help='Mirrored share of live traffic: "green=20"; "green=0" turns it off.')
@output_option
@click.pass_context
def endpoint_update(ctx: click.Context, name: str, traffic: str | None, mirror_traffic: str | None,
                    fmt: str) -> None:
    """Change live and mirror traffic; the next request follows the new rule."""
    with reporting():
        if traffic is None and mirror_traffic is None:
            raise SpecError("nothing to update: give --traffic and/or --mirror-traffic", field="traffic")
        live = parse_assignments(traffic, "traffic") if traffic is not None else None
        mirror = parse_assignments(mirror_traffic, "mirror_traffic") if mirror_traffic is not None else None
        emit(client(ctx).update_traffic(name, live, mirror), fmt)


@endpoint.command("regenerate-keys")
@click.argument("name")
@click.option("--key-type", type=click.Choice(["primary", "secondary"]), required=True)
@click.option("--value", help="The new key (at least 16 characters); default: a random one.")
@click.pass_context
def endpoint_regenerate_keys(ctx: click.Context, name: str, key_type: str, value: str | None) -> None:
    """Replace one key; the other keeps working, so clients can move over without downtime."""
    with reporting():
        client(ctx).regenerate_keys(name, key_type, value)
    output.note(f"{key_type} key of {name} regenerated (appliance endpoint get-credentials {name})")


@endpoint.command("get-token")
@click.argument("name")
@click.option("--ttl", default=3600, show_default=True, help="Seconds the token lives (60-86400).")
@output_option
@click.pass_context
def endpoint_get_token(ctx: click.Context, name: str, ttl: int, fmt: str) -> None:
    """A bearer token for an endpoint with auth_mode aml_token."""
    with reporting():
        emit(client(ctx).get_token(name, ttl), "json" if fmt == "table" else fmt)


@endpoint.command("logs")
@click.argument("name")
@click.option("--since", "since", help="Only requests newer than this: 30s, 5m, 2h.")
@click.option("--deployment", help="Only this deployment's requests.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new requests (Ctrl-C stops).")
@click.option("--tail", default=200, show_default=True, help="At most this many of the newest requests.")
@output_option
@click.pass_context
def endpoint_logs(ctx: click.Context, name: str, since: str | None, deployment: str | None, follow: bool,
                  tail: int, fmt: str) -> None:
    """The request log: one line per live and per mirrored request."""
    c = client(ctx)
    window = duration(since, "--since") if since else None
    with reporting():
        rows = c.request_logs(name, since=window, deployment=deployment, limit=tail)
        if fmt != "table":
            emit(rows, fmt)
            return
        for row in rows:
            click.echo(log_line(row))
        last = rows[-1]["id"] if rows else 0
        while follow:
            time.sleep(1)
            for row in c.request_logs(name, deployment=deployment, after_id=last, limit=1000):
                click.echo(log_line(row))
                last = row["id"]


def log_line(row: dict[str, Any]) -> str:
    mirrored = "mirror" if row["mirrored"] else "live"
    return (f"{row['at']}  {row['status']:>3}  {row['latency_ms']:8.2f}ms  {row['deployment'] or '-':<12} "
            f"{mirrored:<6} {row['instance'] or '-':<14} {row['bytes_in']:>7}B in {row['bytes_out']:>7}B out  "
            f"key={row['key_id'] or '-'}  {row['request_id']}")


@endpoint.command("metrics")
@click.argument("name")
@click.option("--since", default="5m", show_default=True, help="Window: 30s, 5m, 2h.")
@output_option
@click.pass_context
def endpoint_metrics(ctx: click.Context, name: str, since: str, fmt: str) -> None:
    """Per deployment: requests/s, p50/p95/p99 latency, error rate (live requests)."""
    with reporting():
        rows = client(ctx).metrics(name, duration(since, "--since"))
    def number(key: str, spec: str) -> Column:
        return lambda m: "-" if m[key] is None else format(m[key], spec)

    emit(rows, fmt, [("DEPLOYMENT", lambda m: m["deployment"] or "(refused)"), ("REQUESTS", lambda m: m["requests"]),
                     ("REQ/S", number("requests_per_second", ".1f")), ("P50 ms", number("p50_ms", ".2f")),
                     ("P95 ms", number("p95_ms", ".2f")), ("P99 ms", number("p99_ms", ".2f")),
                     ("ERRORS", number("error_rate", ".1%")), ("MIRRORED", lambda m: m["mirrored"])])


@endpoint.command("mirror-report")
@click.argument("name")
@click.option("--since", default="10m", show_default=True, help="Window: 30s, 10m, 2h.")
@output_option
@click.pass_context
def endpoint_mirror_report(ctx: click.Context, name: str, since: str, fmt: str) -> None:
    """Live and mirrored answers to the same requests, compared: the evidence before shifting traffic."""
    with reporting():
        emit(client(ctx).mirror_report(name, duration(since, "--since")), fmt)


@endpoint.command("invoke")
@click.argument("name")
@click.option("--request-file", required=True, type=click.File("rb"), help="JSON request body ('-' for stdin).")
@click.option("--deployment", help="Pin the request to this deployment.")
@click.pass_context
def endpoint_invoke(ctx: click.Context, name: str, request_file: Any, deployment: str | None) -> None:
    """Score a request, as a client holding the endpoint's key would."""
    with reporting():
        response = client(ctx).invoke(name, request_file.read(), deployment)
    click.echo(response.text)
    served = response.headers.get("azureml-model-deployment")
    if served:
        output.note(f"served by deployment {served}, request id {response.headers.get('x-request-id')}")
    if response.status_code >= 400:
        output.fail(f"HTTP {response.status_code}")
        sys.exit(1)


# -- deployments -------------------------------------------------------------------------------

DEPLOYMENT_COLUMNS = [("NAME", lambda d: d["name"]), ("STATE", lambda d: d["provisioning_state"]),
                      ("TRAFFIC", lambda d: f"{d['traffic']}%"), ("MODEL", lambda d: d.get("model")),
                      ("INSTANCES", lambda d: f"{sum(i['state'] == 'ready' for i in d['instances'])}"
                                             f"/{d['instance_count']}"),
                      ("PROVIDER", lambda d: d.get("provider"))]


@cli.group()
def deployment() -> None:
    """Online deployments."""


@deployment.command("create")
@click.option("-f", "--file", "file", required=True, type=click.Path(dir_okay=False), help="Deployment YAML.")
@click.option("--name", help="Overrides the file's name.")
@click.option("--endpoint-name", help="Overrides the file's endpoint_name.")
@click.option("--all-traffic", is_flag=True, help="Send all live traffic to this deployment.")
@click.option("--set", "sets", multiple=True, help="field=value, e.g. instance_count=2; repeatable.")
@click.option("--no-wait", is_flag=True)
@output_option
@click.pass_context
def deployment_create(ctx: click.Context, file: str, name: str | None, endpoint_name: str | None,
                      all_traffic: bool, sets: tuple[str, ...], no_wait: bool, fmt: str) -> None:
    """Create an online deployment (fails if it exists; `apply` updates)."""
    with reporting():
        docs = documents_from_files([file])
        body = docs[0]["body"]
        if name:
            body["name"] = name
        if endpoint_name:
            body["endpoint_name"] = endpoint_name
        for key, value in _pairs(sets, "--set").items():
            set_field(body, key, value)
        result = follow_stream(client(ctx).apply_streamed(docs, create_only=True, all_traffic=all_traffic,
                                                          wait=0 if no_wait else WAIT))
    report_apply(result, fmt, not no_wait)


@deployment.command("list")
@click.argument("endpoint_name")
@output_option
@click.pass_context
def deployment_list(ctx: click.Context, endpoint_name: str, fmt: str) -> None:
    with reporting():
        emit(client(ctx).list_deployments(endpoint_name), fmt, DEPLOYMENT_COLUMNS)


@deployment.command("show")
@click.argument("endpoint_name")
@click.argument("name")
@output_option
@click.pass_context
def deployment_show(ctx: click.Context, endpoint_name: str, name: str, fmt: str) -> None:
    with reporting():
        emit(client(ctx).get_deployment(endpoint_name, name), fmt)


@deployment.command("update")
@click.argument("endpoint_name")
@click.argument("name")
@click.option("--set", "sets", multiple=True, required=True,
              help="field=value, e.g. instance_count=3 or environment_variables.MODE=fast; repeatable.")
@click.option("--no-wait", is_flag=True)
@output_option
@click.pass_context
def deployment_update(ctx: click.Context, endpoint_name: str, name: str, sets: tuple[str, ...], no_wait: bool,
                      fmt: str) -> None:
    """Change a deployment: a new instance count scales, anything else replaces instances
    one group at a time (new ones ready before old ones drain)."""
    with reporting():
        result = client(ctx).update_deployment(endpoint_name, name, _pairs(sets, "--set"), 0 if no_wait else WAIT)
    report_apply(result, fmt, not no_wait)


@deployment.command("logs")
@click.argument("endpoint_name")
@click.argument("name")
@click.option("--instance", help="One instance: its name (blue-3) or number (3).")
@click.option("--tail", type=int, help="Only the last N lines.")
@click.option("--since", help="Only lines newer than this: 30s, 5m, 2h.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines (Ctrl-C stops).")
@click.pass_context
def deployment_logs(ctx: click.Context, endpoint_name: str, name: str, instance: str | None, tail: int | None,
                    since: str | None, follow: bool) -> None:
    """The workers' stdout and stderr, with timestamps."""
    c = client(ctx)
    window = duration(since, "--since") if since else None
    with reporting():
        page = c.deployment_logs(endpoint_name, name, instance=instance, since=window, tail=tail)
        while True:
            for line in page["lines"]:
                click.echo(f"{line['instance']}  {line['at']}  {line['stream']:<6} {line['text']}")
            if not follow:
                return
            time.sleep(0.5)
            page = c.deployment_logs(endpoint_name, name, instance=instance, cursor=page["cursor"])


@deployment.command("delete")
@click.argument("endpoint_name")
@click.argument("name")
@click.pass_context
def deployment_delete(ctx: click.Context, endpoint_name: str, name: str) -> None:
    """Delete a deployment (it must take no live traffic)."""
    with reporting():
        client(ctx).delete_deployment(endpoint_name, name)
    output.note(f"deployment {endpoint_name}/{name} deleted")


@cli.command()
@click.argument("endpoint_name")
@click.argument("name")
@click.option("--push", help="Also push to REGISTRY/REPO (same tag).")
@output_option
@click.pass_context
def package(ctx: click.Context, endpoint_name: str, name: str, push: str | None, fmt: str) -> None:
    """Bake a deployment's model and code into a self-contained image (Azure's Model.package);
    it serves /score and /v2 on its own: docker run -p 127.0.0.1:8080:8080 IMAGE."""
    with reporting():
        result = follow_stream(client(ctx).package(endpoint_name, name, push))
    if fmt == "table":
        click.echo(result["reference"])
    else:
        emit(result, fmt)


# -- helpers -----------------------------------------------------------------------------------

def duration(text: str, option: str) -> float:
    """`90`, `30s`, `5m`, `2h`, `1d` → seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "s")
    try:
        value = float(number) * units[unit]
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a duration like 30s, 5m or 2h", param_hint=option) from None
    if not 0 < value < float("inf"):
        raise click.BadParameter(f"{text!r} must be a positive, finite duration", param_hint=option)
    return value


def _pairs(items: tuple[str, ...], option: str) -> dict[str, str]:
    result = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not key=value", param_hint=option)
        result[key] = value
    return result


def main() -> None:
    cli(prog_name="appliance")
