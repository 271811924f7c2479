"""`appliance batch-deployment`: az ml's verbs and flags."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from appliance.cli import output
from appliance.cli.batch_endpoint import spec_of, warn_all
from appliance.cli.common import (
    WAIT,
    Group,
    apply_sets,
    client,
    endpoint_and_name,
    endpoint_option,
    file_option,
    name_option,
    no_wait_option,
    reporting,
    set_option,
    yes_option,
)
from appliance.cli.job import JOB_COLUMNS
from appliance.cli.output import Column, emit, output_option

COLUMNS: list[Column] = [
    ("NAME", lambda d: d["name"]), ("STATE", lambda d: d.get("provisioning_state")), ("TYPE", lambda d: d.get("type")),
    ("MODEL", lambda d: d.get("model")), ("INSTANCES", lambda d: (d.get("resources") or {}).get("instance_count")),
    ("MINI-BATCH", lambda d: (d.get("settings") or {}).get("mini_batch_size")),
    ("CONCURRENCY", lambda d: (d.get("settings") or {}).get("max_concurrency_per_instance"))]
names = click.argument("positional", nargs=-1, metavar="[ENDPOINT NAME]")


@click.group(cls=Group)
def group() -> None:
    """Batch deployments (az ml batch-deployment)."""


def _apply(ctx: click.Context, docs: list[dict[str, Any]], create_only: bool, set_default: bool, no_wait: bool,
           fmt: str, query: str | None) -> dict[str, Any]:
    """Apply one batch deployment document and print the deployment; exits 1 when it failed."""
    body = docs[0]["body"]
    body["$schema"] = "batchDeployment.schema.json"  # a file without $schema is read as a batch deployment
    c = client(ctx)
    warn_all(c.apply_batch(docs, create_only=create_only, set_default=set_default, wait=0 if no_wait else WAIT))
    shown = c.get_batch_deployment(body["endpoint_name"], body["name"])
    emit(shown, fmt, None, query)
    if shown.get("provisioning_state") == "Failed":
        output.fail(f"batch deployment {body['endpoint_name']}/{body['name']} failed: {shown.get('error')}")
        sys.exit(1)
    return shown


def _override(body: dict[str, Any], endpoint: str | None, name: str | None) -> None:
    """-e/-n given with a file win over the file's endpoint_name/name."""
    if endpoint:
        body["endpoint_name"] = endpoint
    if name:
        body["name"] = name


@group.command("create")
@file_option
@name_option
@endpoint_option
@set_option
@click.option("--set-default", is_flag=True, help="Make it the endpoint's default deployment.")
@no_wait_option
@output_option()
@click.pass_context
def create(ctx: click.Context, file: str | None, name: str | None, endpoint: str | None,
           sets: tuple[str, ...], set_default: bool, no_wait: bool, fmt: str, query: str | None) -> None:
    """Create a batch deployment (fails if it exists; `update` changes one)."""
    from appliance.client import documents_from_files

    if not file:
        raise click.UsageError("give the deployment's YAML: -f/--file FILE")
    with reporting():
        docs = documents_from_files([file])
        body = docs[0]["body"]
        _override(body, endpoint, name)
        apply_sets(body, "batch_deployment", sets)
        _apply(ctx, docs, True, set_default, no_wait, fmt, query)
    ep, dep = body["endpoint_name"], body["name"]
    if set_default:
        output.hint(f"next: appliance batch-endpoint invoke -n {ep} --input <folder> --stream")
    else:
        output.hint(f"next: appliance batch-endpoint invoke -n {ep} --deployment-name {dep} --input <folder>, or make "
                    f"it the default: appliance batch-endpoint update -n {ep} --set defaults.deployment_name={dep}")


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
    """Change a batch deployment from a file and/or `--set settings.mini_batch_size=4 ...`; running jobs keep
    the settings they started with."""
    from appliance.client import documents_from_files

    if not (file or sets):
        raise click.UsageError("nothing to update: give -f FILE and/or --set FIELD=VALUE ...")
    with reporting():
        if file:
            docs = documents_from_files([file])
            _override(docs[0]["body"], endpoint, name)
        else:
            endpoint, name = endpoint_and_name(positional, endpoint, name)
            current = client(ctx).get_batch_deployment(endpoint, name)
            docs = [{"body": spec_of("batch_deployment", current), "source": "<command line>", "base": os.getcwd()}]
        apply_sets(docs[0]["body"], "batch_deployment", sets)
        _apply(ctx, docs, False, False, no_wait, fmt, query)


@group.command("list")
@names
@endpoint_option
@output_option()
@click.pass_context
def list_(ctx: click.Context, positional: tuple[str, ...], endpoint: str | None, fmt: str, query: str | None) -> None:
    """A batch endpoint's deployments."""
    endpoint, _ = endpoint_and_name(positional, endpoint, None, need_name=False)
    with reporting():
        emit(client(ctx).list_batch_deployments(endpoint), fmt, COLUMNS, query)


@group.command("show")
@names
@endpoint_option
@name_option
@output_option()
@click.pass_context
def show(ctx: click.Context, positional: tuple[str, ...], endpoint: str | None, name: str | None, fmt: str,
         query: str | None) -> None:
    """One batch deployment: model, code, environment, resources, settings, provisioning_state."""
    endpoint, name = endpoint_and_name(positional, endpoint, name)
    with reporting():
        emit(client(ctx).get_batch_deployment(endpoint, name), fmt, None, query)


@group.command("delete")
@names
@endpoint_option
@name_option
@yes_option
@no_wait_option
@click.pass_context
def delete(ctx: click.Context, positional: tuple[str, ...], endpoint: str | None, name: str | None, yes: bool,
           no_wait: bool) -> None:
    """Delete a batch deployment."""
    endpoint, name = endpoint_and_name(positional, endpoint, name)
    with reporting():
        client(ctx).delete_batch_deployment(endpoint, name)
    output.note(f"batch deployment {endpoint}/{name} deleted")


@group.command("list-jobs")
@names
@endpoint_option
@name_option
@output_option()
@click.pass_context
def list_jobs(ctx: click.Context, positional: tuple[str, ...], endpoint: str | None, name: str | None, fmt: str,
              query: str | None) -> None:
    """The deployment's jobs, newest first."""
    endpoint, name = endpoint_and_name(positional, endpoint, name)
    with reporting():
        emit(client(ctx).list_jobs(endpoint=endpoint, deployment=name), fmt, JOB_COLUMNS, query)
