"""`appliance online-endpoint` (alias `endpoint`): az ml's verbs and flags."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import click

from appliance.cli import output
from appliance.cli.common import (
    Group,
    apply_sets,
    client,
    confirm,
    duration,
    file_option,
    name_option,
    no_wait_option,
    one_name,
    reporting,
    set_option,
    yes_option,
)
from appliance.cli.output import Column, emit, output_option

COLUMNS: list[Column] = [("NAME", lambda e: e["name"]), ("AUTH", lambda e: e["auth_mode"]),
                         ("TRAFFIC", lambda e: e["traffic"]), ("MIRROR", lambda e: e["mirror_traffic"]),
                         ("STATE", lambda e: e.get("provisioning_state")),
                         ("SCORING URI", lambda e: e["scoring_uri"])]
names = click.argument("positional", nargs=-1, metavar="[NAME]")


@click.group(cls=Group)
def group() -> None:
    """Online endpoints (az ml online-endpoint)."""


@group.command("create")
@names
@file_option
@name_option
@click.option("--auth-mode", type=click.Choice(["key", "aml_token", "aad_token"], case_sensitive=False))
@set_option
@no_wait_option
@output_option()
@click.pass_context
def create(ctx: click.Context, positional: tuple[str, ...], file: str | None, name: str | None,
           auth_mode: str | None, sets: tuple[str, ...], no_wait: bool, fmt: str, query: str | None) -> None:
    """Create an online endpoint (fails if it exists; `update` or `apply` change one)."""
    from appliance.client import documents_from_files
    from appliance.specs.errors import SpecError

    with reporting():
        docs: list[dict[str, Any]] = documents_from_files([file]) if file else [
            {"body": {}, "source": "<command line>", "base": os.getcwd()}]
        body = docs[0]["body"]
        body["$schema"] = "managedOnlineEndpoint.schema.json"
        name = name or (positional[0] if positional else None)
        if name:
            body["name"] = name
        if auth_mode:
            body["auth_mode"] = auth_mode.lower()
        apply_sets(body, "online_endpoint", sets)
        if "name" not in body:
            raise SpecError("give the endpoint a name (-n/--name or name: in the file)", field="name")
        c = client(ctx)
        result = c.apply(docs, create_only=True)
        for warning in result.get("warnings", []):
            output.warn(warning)
        emit(c.get_endpoint(body["name"]), fmt, None, query)
    output.hint(f"next: appliance online-deployment create -f <deployment.yml> -e {body['name']} --all-traffic")


@group.command("list")
@output_option()
@click.pass_context
def list_(ctx: click.Context, fmt: str, query: str | None) -> None:
    """Every online endpoint."""
    with reporting():
        emit(client(ctx).list_endpoints(), fmt, COLUMNS, query)


@group.command("show")
@names
@name_option
@output_option()
@click.pass_context
def show(ctx: click.Context, positional: tuple[str, ...], name: str | None, fmt: str, query: str | None) -> None:
    """One endpoint: auth mode, traffic, scoring_uri, openapi_uri, provisioning_state, and its deployments'
    scheduled monitors with their last signals (`monitors`)."""
    from appliance.cli.monitor import monitor_lines

    name = one_name(positional, name)
    with reporting():
        c = client(ctx)
        endpoint = c.get_endpoint(name)
        monitors = c.list_monitors(name)
    if fmt != "table" or query:
        endpoint["monitors"] = [{**{k: m.get(k) for k in ("name", "deployment_name", "status", "last_run_at",
                                                          "next_run_at", "summary")},
                                 "signals": {n: {"status": s["status"], "failed_features": s["failed_features"]}
                                             for n, s in ((m.get("last_run") or {}).get("signals") or {}).items()}}
                                for m in monitors]
        emit(endpoint, fmt, None, query)
        return
    emit(endpoint, fmt)
    if monitors:
        click.echo("\nmonitors")
        for line in monitor_lines(monitors):
            click.echo(f"  {line}")


@group.command("delete")
@names
@name_option
@yes_option
@no_wait_option
@click.pass_context
def delete(ctx: click.Context, positional: tuple[str, ...], name: str | None, yes: bool, no_wait: bool) -> None:
    """Delete an endpoint and all its deployments."""
    name = one_name(positional, name)
    confirm(yes, f"Delete endpoint {name} and all its deployments?", "deleting an endpoint deletes its deployments")
    with reporting():
        client(ctx).delete_endpoint(name)
    output.note(f"endpoint {name} deleted")


@group.command("get-credentials")
@names
@name_option
@output_option(default="json")
@click.pass_context
def get_credentials(ctx: click.Context, positional: tuple[str, ...], name: str | None, fmt: str,
                    query: str | None) -> None:
    """The keys (auth_mode key: primaryKey, secondaryKey) or a token (accessToken, expiryTimeUtc, ...)."""
    name = one_name(positional, name)
    with reporting():
        c = client(ctx)
        keys = c.get_endpoint(name)["auth_mode"] == "key"
        answer = c.get_credentials(name) if keys else c.get_token(name)
        emit(answer, fmt, None, query)


@group.command("update")
@names
@name_option
@file_option
@click.option("--traffic", help='Live traffic: "blue=90 green=10" (or "blue=90,green=10").')
@click.option("--mirror-traffic", help='Mirrored share of live traffic: "green=20"; "green=0" turns it off.')
@set_option
@no_wait_option
@output_option()
@click.pass_context
def update(ctx: click.Context, positional: tuple[str, ...], name: str | None, file: str | None, traffic: str | None,
           mirror_traffic: str | None, sets: tuple[str, ...], no_wait: bool, fmt: str, query: str | None) -> None:
    """Change traffic and mirror traffic (the next request follows the new rule), or the fields of a file."""
    from appliance.client import documents_from_files
    from appliance.specs.errors import SpecError
    from appliance.specs.traffic import parse_assignments

    with reporting():
        c = client(ctx)
        if file or sets:
            if file:
                docs = documents_from_files([file])
            else:
                current = c.get_endpoint(one_name(positional, name))
                keep = ("name", "description", "tags", "auth_mode", "traffic", "mirror_traffic")
                docs = [{"body": {k: current[k] for k in keep if k in current}, "source": "<command line>",
                         "base": os.getcwd()}]
            body = docs[0]["body"]
            body["$schema"] = "managedOnlineEndpoint.schema.json"
            if name or positional:
                body["name"] = one_name(positional, name)
            apply_sets(body, "online_endpoint", sets)
            result = c.apply(docs)
            for warning in result.get("warnings", []):
                output.warn(warning)
            name = body.get("name")
        name = one_name(positional, name)
        if traffic is None and mirror_traffic is None and not (file or sets):
            raise SpecError("nothing to update: give --traffic, --mirror-traffic, -f or --set", field="traffic")
        if traffic is not None or mirror_traffic is not None:
            live = parse_assignments(traffic, "traffic") if traffic is not None else None
            mirror = parse_assignments(mirror_traffic, "mirror_traffic") if mirror_traffic is not None else None
            c.update_traffic(name, live, mirror)
        emit(c.get_endpoint(name), fmt, None, query)


@group.command("regenerate-keys")
@names
@name_option
@click.option("--key-type", type=click.Choice(["primary", "secondary"]), required=True)
@click.option("--value", help="The new key (at least 16 characters); default: a random one.")
@click.pass_context
def regenerate_keys(ctx: click.Context, positional: tuple[str, ...], name: str | None, key_type: str,
                    value: str | None) -> None:
    """Replace one key; the other keeps working, so clients can move over without downtime."""
    name = one_name(positional, name)
    with reporting():
        client(ctx).regenerate_keys(name, key_type, value)
    output.note(f"{key_type} key of {name} regenerated (appliance online-endpoint get-credentials -n {name})")


@group.command("get-token")
@names
@name_option
@click.option("--ttl", default=3600, show_default=True, help="Seconds the token lives (60-86400).")
@output_option(default="json")
@click.pass_context
def get_token(ctx: click.Context, positional: tuple[str, ...], name: str | None, ttl: int, fmt: str,
              query: str | None) -> None:
    """A bearer token for an endpoint with auth_mode aml_token."""
    name = one_name(positional, name)
    with reporting():
        emit(client(ctx).get_token(name, ttl), fmt, None, query)


LOG_COLUMNS: list[Column] = [
    ("AT", lambda r: r["at"]), ("STATUS", lambda r: r["status"]), ("LATENCY ms", lambda r: r["latency_ms"]),
    ("DEPLOYMENT", lambda r: r["deployment"]), ("KIND", lambda r: "mirror" if r["mirrored"] else "live"),
    ("INSTANCE", lambda r: r["instance"]), ("BYTES IN", lambda r: r["bytes_in"]),
    ("BYTES OUT", lambda r: r["bytes_out"]), ("KEY", lambda r: r["key_id"]), ("REQUEST ID", lambda r: r["request_id"])]


@group.command("logs")
@names
@name_option
@click.option("--since", "since", help="Only requests newer than this: 30s, 5m, 2h.")
@click.option("--deployment", help="Only this deployment's requests.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new requests (Ctrl-C stops).")
@click.option("--tail", default=200, show_default=True, help="At most this many of the newest requests.")
@output_option()
@click.pass_context
def logs(ctx: click.Context, positional: tuple[str, ...], name: str | None, since: str | None,
         deployment: str | None, follow: bool, tail: int, fmt: str, query: str | None) -> None:
    """The request log: one row per live and per mirrored request."""
    name = one_name(positional, name)
    window = duration(since, "--since") if since else None
    with reporting():
        c = client(ctx)
        rows = c.request_logs(name, since=window, deployment=deployment, limit=tail)
        emit(rows, fmt, LOG_COLUMNS, query)
        last = rows[-1]["id"] if rows else 0
        while follow:
            time.sleep(1)
            more = c.request_logs(name, deployment=deployment, after_id=last, limit=1000)
            for row in more:
                if fmt == "table":
                    cells = [[output.cell(get(row)) for _, get in LOG_COLUMNS]]
                    click.echo(output.table([title for title, _ in LOG_COLUMNS], cells).splitlines()[1])
                else:
                    emit(row, fmt, None, query)
                last = row["id"]


def _number(key: str, spec: str) -> Any:
    return lambda m: "-" if m[key] is None else format(m[key], spec)


@group.command("metrics")
@names
@name_option
@click.option("--since", default="5m", show_default=True, help="Window: 30s, 5m, 2h.")
@output_option()
@click.pass_context
def metrics(ctx: click.Context, positional: tuple[str, ...], name: str | None, since: str, fmt: str,
            query: str | None) -> None:
    """Per deployment: requests/s, p50/p95/p99 latency, error rate (live requests)."""
    name = one_name(positional, name)
    with reporting():
        rows = client(ctx).metrics(name, duration(since, "--since"))
    emit(rows, fmt, [("DEPLOYMENT", lambda m: m["deployment"] or "(refused)"), ("REQUESTS", lambda m: m["requests"]),
                     ("REQ/S", _number("requests_per_second", ".1f")), ("P50 ms", _number("p50_ms", ".2f")),
                     ("P95 ms", _number("p95_ms", ".2f")), ("P99 ms", _number("p99_ms", ".2f")),
                     ("ERRORS", _number("error_rate", ".1%")), ("MIRRORED", lambda m: m["mirrored"])], query)


@group.command("mirror-report")
@names
@name_option
@click.option("--since", default="10m", show_default=True, help="Window: 30s, 10m, 2h.")
@output_option()
@click.pass_context
def mirror_report(ctx: click.Context, positional: tuple[str, ...], name: str | None, since: str, fmt: str,
                  query: str | None) -> None:
    """Live and mirrored answers to the same requests, compared: the evidence before shifting traffic."""
    name = one_name(positional, name)
    with reporting():
        emit(client(ctx).mirror_report(name, duration(since, "--since")), fmt, None, query)


@group.command("invoke")
@names
@name_option
@click.option("--request-file", required=True, type=click.File("rb"), help="JSON request body ('-' for stdin).")
@click.option("-d", "--deployment-name", "--deployment", "deployment", help="Pin the request to this deployment.")
@click.pass_context
def invoke(ctx: click.Context, positional: tuple[str, ...], name: str | None, request_file: Any,
           deployment: str | None) -> None:
    """Score a request, as a client holding the endpoint's key would."""
    name = one_name(positional, name)
    with reporting():
        response = client(ctx).invoke(name, request_file.read(), deployment)
    click.echo(response.text)
    served = response.headers.get("azureml-model-deployment")
    if served:
        output.note(f"served by deployment {served}, request id {response.headers.get('x-request-id')}")
    if response.status_code >= 400:
        output.fail(f"HTTP {response.status_code}")
        sys.exit(1)
