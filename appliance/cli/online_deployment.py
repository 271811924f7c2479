"""`appliance online-deployment` (alias `deployment`): az ml's verbs and flags."""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from appliance.cli import output
from appliance.cli.common import (
    WAIT,
    Group,
    apply_sets,
    client,
    command_line_sets,
    duration,
    endpoint_and_name,
    endpoint_option,
    file_option,
    follow_stream,
    name_option,
    no_wait_option,
    reporting,
    set_option,
    yes_option,
)
from appliance.cli.output import Column, emit, output_option

COLUMNS: list[Column] = [
    ("NAME", lambda d: d["name"]), ("STATE", lambda d: d["provisioning_state"]),
    ("TRAFFIC", lambda d: f"{d['traffic']}%"), ("MODEL", lambda d: d.get("model")),
    ("INSTANCES", lambda d: f"{sum(i['state'] == 'ready' for i in d['instances'])}/{d['instance_count']}"),
    ("PROVIDER", lambda d: d.get("provider"))]
names = click.argument("positional", nargs=-1, metavar="[ENDPOINT NAME]")


@click.group(cls=Group)
def group() -> None:
    """Online deployments (az ml online-deployment)."""


def report_apply(result: dict[str, Any], fmt: str, waited: bool, query: str | None = None) -> None:
    """What was applied; exits 1 when a deployment failed or, waited for, is not ready (as `az ml` does)."""
    for warning in result["warnings"]:
        output.warn(warning)
    if fmt != "table" or query:
        emit(result, fmt, None, query)
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


@group.command("create")
@names
@file_option
@name_option
@endpoint_option
@click.option("--all-traffic", is_flag=True, help="Send all live traffic to this deployment.")
@set_option
@no_wait_option
@click.option("--skip-script-validation", is_flag=True, hidden=True)
@output_option()
@click.pass_context
def create(ctx: click.Context, positional: tuple[str, ...], file: str | None, name: str | None, endpoint: str | None,
           all_traffic: bool, sets: tuple[str, ...], no_wait: bool, skip_script_validation: bool, fmt: str,
           query: str | None) -> None:
    """Create an online deployment (fails if it exists; `update` changes one). It gets no live traffic
    unless --all-traffic, or it is the endpoint's first."""
    from appliance.client import documents_from_files

    if not file:
        raise click.UsageError("give the deployment's YAML: -f/--file FILE")
    with reporting():
        docs = documents_from_files([file])
        body = docs[0]["body"]
        if name:
            body["name"] = name
        if endpoint:
            body["endpoint_name"] = endpoint
        apply_sets(body, "online_deployment", sets)
        result = follow_stream(client(ctx).apply_streamed(docs, create_only=True, all_traffic=all_traffic,
                                                          wait=0 if no_wait else WAIT))
    report_apply(result, fmt, not no_wait, query)
    ep, dep = body.get("endpoint_name"), body.get("name")
    traffic = next((item["traffic"] for item in result["applied"] if item["kind"] == "traffic"), None)
    if traffic and traffic.get(dep):
        output.hint(f"next: appliance online-endpoint invoke -n {ep} --request-file <request.json>")
    else:
        output.hint(f"deployment {dep} gets 0% of {ep}'s live traffic; route to it with: appliance online-endpoint "
                    f"update -n {ep} --traffic \"{dep}=100\" (or try it first: appliance online-endpoint invoke "
                    f"-n {ep} -d {dep} --request-file <request.json>)")


@group.command("list")
@names
@endpoint_option
@output_option()
@click.pass_context
def list_(ctx: click.Context, positional: tuple[str, ...], endpoint: str | None, fmt: str, query: str | None) -> None:
    """An endpoint's deployments."""
    endpoint, _ = endpoint_and_name(positional, endpoint, None, need_name=False)
    with reporting():
        emit(client(ctx).list_deployments(endpoint), fmt, COLUMNS, query)


@group.command("show")
@names
@endpoint_option
@name_option
@output_option()
@click.pass_context
def show(ctx: click.Context, positional: tuple[str, ...], endpoint: str | None, name: str | None, fmt: str,
         query: str | None) -> None:
    """One deployment: its spec, provisioning_state, instances, traffic."""
    endpoint, name = endpoint_and_name(positional, endpoint, name)
    with reporting():
        emit(client(ctx).get_deployment(endpoint, name), fmt, None, query)


@group.command("update")
@names
@endpoint_option
@name_option
@file_option
@set_option
@no_wait_option
@output_option()
@click.pass_context
def update(ctx: click.Context, positional: tuple[str, ...], endpoint: str | None, name: str | None, file: str | None,
           sets: tuple[str, ...], no_wait: bool, fmt: str, query: str | None) -> None:
    """Change a deployment: a new instance count scales, anything else replaces instances
    one group at a time (new ones ready before old ones drain)."""
    from appliance.client import documents_from_files

    with reporting():
        if file:
            docs = documents_from_files([file])
            body = docs[0]["body"]
            if name or endpoint or positional:
                body["endpoint_name"], body["name"] = endpoint_and_name(positional, endpoint, name)
            apply_sets(body, "online_deployment", sets)
            result = follow_stream(client(ctx).apply_streamed(docs, wait=0 if no_wait else WAIT))
        else:
            endpoint, name = endpoint_and_name(positional, endpoint, name)
            if not sets:
                raise click.UsageError("nothing to update: give -f FILE and/or --set FIELD=VALUE ...")
            result = client(ctx).update_deployment(endpoint, name, command_line_sets("online_deployment", sets),
                                                   0 if no_wait else WAIT)
    report_apply(result, fmt, not no_wait, query)


def _print_lines(page: dict[str, Any]) -> None:
    for line in page["lines"]:
        click.echo(f"{line['instance']}  {line['at']}  {line['stream']:<6} {line['text']}")


@group.command("get-logs")
@names
@endpoint_option
@name_option
@click.option("-l", "--lines", type=click.IntRange(1), help="Only the last N lines.")
@click.option("--instance", help="One instance: its name (blue-3) or number (3).")
@click.option("--container", hidden=True, help="Accepted for az ml (inference-server / storage-initializer).")
@click.option("--since", help="Only lines newer than this: 30s, 5m, 2h.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines (Ctrl-C stops).")
@click.pass_context
def get_logs(ctx: click.Context, positional: tuple[str, ...], endpoint: str | None, name: str | None,
             lines: int | None, instance: str | None, container: str | None, since: str | None,
             follow: bool) -> None:
    """The workers' stdout and stderr, with timestamps."""
    _logs(ctx, positional, endpoint, name, lines, instance, since, follow)


@group.command("logs")
@names
@endpoint_option
@name_option
@click.option("--instance", help="One instance: its name (blue-3) or number (3).")
@click.option("--tail", "--lines", "lines", type=click.IntRange(1), help="Only the last N lines.")
@click.option("--since", help="Only lines newer than this: 30s, 5m, 2h.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines (Ctrl-C stops).")
@click.pass_context
def logs(ctx: click.Context, positional: tuple[str, ...], endpoint: str | None, name: str | None,
         instance: str | None, lines: int | None, since: str | None, follow: bool) -> None:
    """The workers' stdout and stderr, with timestamps (as get-logs)."""
    _logs(ctx, positional, endpoint, name, lines, instance, since, follow)


def _logs(ctx: click.Context, positional: tuple[str, ...], endpoint: str | None, name: str | None,
          lines: int | None, instance: str | None, since: str | None, follow: bool) -> None:
    endpoint, name = endpoint_and_name(positional, endpoint, name)
    window = duration(since, "--since") if since else None
    with reporting():
        c = client(ctx)
        page = c.deployment_logs(endpoint, name, instance=instance, since=window, tail=lines)
        while True:
            _print_lines(page)
            if not follow:
                return
            time.sleep(0.5)
            page = c.deployment_logs(endpoint, name, instance=instance, cursor=page["cursor"])


@group.command("delete")
@names
@endpoint_option
@name_option
@yes_option
@no_wait_option
@click.pass_context
def delete(ctx: click.Context, positional: tuple[str, ...], endpoint: str | None, name: str | None, yes: bool,
           no_wait: bool) -> None:
    """Delete a deployment (it must take no live traffic)."""
    endpoint, name = endpoint_and_name(positional, endpoint, name)
    with reporting():
        client(ctx).delete_deployment(endpoint, name)
    output.note(f"deployment {endpoint}/{name} deleted")
