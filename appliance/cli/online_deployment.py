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


PROFILE_COLUMNS: list[Column] = [
    ("CONCURRENCY", lambda s: s["concurrency"]), ("REQ/S", lambda s: s["rps"]),
    ("P50_MS", lambda s: s["p50_ms"]), ("P95_MS", lambda s: s["p95_ms"]), ("P99_MS", lambda s: s["p99_ms"]),
    ("ERRORS", lambda s: s["errors"]), ("CPU/INSTANCE", lambda s: s["cpu_cores_per_instance"]),
    ("RSS_MIB/INSTANCE", lambda s: round(s["rss_bytes_per_instance"] / (1 << 20), 1))]


def _concurrencies(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a list of numbers like 1,2,4,8",
                                 param_hint="--concurrency") from None
    if not values or any(not 1 <= v <= 256 for v in values) or len(values) > 12:
        raise click.BadParameter(f"{text!r}: 1 to 12 concurrencies, each from 1 to 256", param_hint="--concurrency")
    return values


def _milliseconds(text: str) -> float:
    """`50ms`, `0.05s`, `50` (ms) → milliseconds."""
    value = text.strip().lower()
    try:
        if value.endswith("ms"):
            ms = float(value[:-2])
        elif value.endswith("s"):
            ms = float(value[:-1]) * 1000
        else:
            ms = float(value)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a latency like 50ms or 0.2s", param_hint="--target-p99") from None
    if not 0 < ms <= 3_600_000:
        raise click.BadParameter(f"{text!r} must be above 0 and at most an hour", param_hint="--target-p99")
    return ms


@group.command("profile")
@names
@endpoint_option
@name_option
@click.option("--request-file", required=True, type=click.File("rb"),
              help="The request body each request sends to /score ('-' for stdin).")
@click.option("--concurrency", default="1,2,4,8,16", show_default=True,
              help="Concurrent clients for each step, comma-separated.")
@click.option("--duration", "step_duration", default="10s", show_default=True, help="How long each step runs: 10s.")
@click.option("--target-p99", help="The p99 latency to size for: 50ms, 0.2s.")
@click.option("--target-rps", type=click.FloatRange(min=0, min_open=True), help="The req/s to size for.")
@click.option("--content-type", default="application/json", show_default=True, help="The requests' content type.")
@click.option("--no-store", is_flag=True, help="Don't keep the result with the deployment (show/export ignore it).")
@output_option()
@click.pass_context
def profile(ctx: click.Context, positional: tuple[str, ...], endpoint: str | None, name: str | None,
            request_file: Any, concurrency: str, step_duration: str, target_p99: str | None, target_rps: float | None,
            content_type: str, no_store: bool, fmt: str, query: str | None) -> None:
    """Drive the deployment through the router at each concurrency; report req/s, p50/p95/p99, errors,
    CPU and RSS per instance, and recommend instance_count, max_concurrent_requests_per_instance and
    CPU/memory requests for --target-p99 and --target-rps. The result is kept with the deployment
    (`show`, and `export` uses its CPU/memory). Progress on stderr."""
    endpoint, name = endpoint_and_name(positional, endpoint, name)
    steps = _concurrencies(concurrency)
    seconds = duration(step_duration, "--duration")
    if not 0.5 <= seconds <= 120:
        raise click.BadParameter(f"{step_duration!r}: each step runs 0.5 to 120 seconds", param_hint="--duration")
    p99 = _milliseconds(target_p99) if target_p99 else None
    try:
        body = request_file.read().decode()
    except UnicodeDecodeError:
        raise click.BadParameter("the request must be text (UTF-8)", param_hint="--request-file") from None
    with reporting():
        result = follow_stream(client(ctx).profile_deployment(
            endpoint, name, body, concurrency=steps, duration=seconds, target_p99_ms=p99, target_rps=target_rps,
            content_type=content_type, store=not no_store))
    if fmt != "table" or query:
        emit(result, fmt, None, query)
        return
    emit(result["steps"], fmt, PROFILE_COLUMNS)
    rec = result.get("recommendation")
    for note in result.get("notes", []):
        output.warn(note)
    if rec is None:
        sys.exit(1)
    click.echo("")
    emit({"instance_count": rec["instance_count"],
          "max_concurrent_requests_per_instance": rec["max_concurrent_requests_per_instance"],
          "cpu": rec["cpu"], "memory": rec["memory"], "per_instance_rps": rec["per_instance_rps"],
          "at_concurrency": rec["at_concurrency"], "expected_p99_ms": rec["expected_p99_ms"],
          "meets_target_p99": rec["meets_target_p99"]}, fmt)
    for note in rec["notes"]:
        output.note(note)
    if not no_store:
        output.hint(f"apply it: appliance online-deployment update {endpoint} {name} --set instance_count="
                    f"{rec['instance_count']} --set request_settings.max_concurrent_requests_per_instance="
                    f"{rec['max_concurrent_requests_per_instance']}; `appliance export` uses cpu {rec['cpu']} and "
                    f"memory {rec['memory']}")
