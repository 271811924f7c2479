"""`appliance batch-endpoint`: az ml's verbs and flags; `invoke` starts a scoring job (`appliance job`)."""

from __future__ import annotations

import os
from typing import Any

import click

from appliance.cli import output
from appliance.cli.common import (
    Group,
    apply_sets,
    client,
    confirm,
    file_option,
    name_option,
    no_wait_option,
    one_name,
    pairs,
    reporting,
    resolve_path,
    set_option,
    yes_option,
)
from appliance.cli.job import JOB_COLUMNS
from appliance.cli.output import Column, emit, output_option

COLUMNS: list[Column] = [("NAME", lambda e: e["name"]), ("AUTH", lambda e: e.get("auth_mode")),
                         ("DEFAULT DEPLOYMENT", lambda e: (e.get("defaults") or {}).get("deployment_name")),
                         ("STATE", lambda e: e.get("provisioning_state")),
                         ("SCORING URI", lambda e: e.get("scoring_uri"))]
# What `invoke --set` may change: the job's own settings (the API takes these, nothing else).
INVOKE_SETS = ("output_file_name", "mini_batch_size", "instance_count")
names = click.argument("positional", nargs=-1, metavar="[NAME]")


@click.group(cls=Group)
def group() -> None:
    """Batch endpoints (az ml batch-endpoint)."""


def spec_of(kind: str, view: dict[str, Any]) -> dict[str, Any]:
    """The fields of a kind's YAML that a view (what `show` prints) holds: a document to change and apply again."""
    from appliance.specs.documents import field_names
    from appliance.specs.entities import KINDS

    return {k: view[k] for k in field_names(KINDS[kind], []) or [] if view.get(k) is not None}


def warn_all(result: dict[str, Any]) -> None:
    for warning in result.get("warnings", []):
        output.warn(warning)


@group.command("create")
@names
@file_option
@name_option
@set_option
@no_wait_option
@output_option()
@click.pass_context
def create(ctx: click.Context, positional: tuple[str, ...], file: str | None, name: str | None,
           sets: tuple[str, ...], no_wait: bool, fmt: str, query: str | None) -> None:
    """Create a batch endpoint (fails if it exists; `update` changes one)."""
    from appliance.client import documents_from_files
    from appliance.specs.errors import SpecError

    with reporting():
        docs: list[dict[str, Any]] = documents_from_files([file]) if file else [
            {"body": {}, "source": "<command line>", "base": os.getcwd()}]
        body = docs[0]["body"]
        body["$schema"] = "batchEndpoint.schema.json"
        name = name or (positional[0] if positional else None)
        if name:
            body["name"] = name
        apply_sets(body, "batch_endpoint", sets)
        if "name" not in body:
            raise SpecError("give the endpoint a name (-n/--name or name: in the file)", field="name")
        c = client(ctx)
        warn_all(c.apply_batch(docs, create_only=True))
        emit(c.get_batch_endpoint(body["name"]), fmt, None, query)
    output.hint(f"next: appliance batch-deployment create -f <deployment.yml> -e {body['name']} --set-default")


@group.command("list")
@output_option()
@click.pass_context
def list_(ctx: click.Context, fmt: str, query: str | None) -> None:
    """Every batch endpoint."""
    with reporting():
        emit(client(ctx).list_batch_endpoints(), fmt, COLUMNS, query)


@group.command("show")
@names
@name_option
@output_option()
@click.pass_context
def show(ctx: click.Context, positional: tuple[str, ...], name: str | None, fmt: str, query: str | None) -> None:
    """One batch endpoint: its default deployment, scoring_uri, provisioning_state."""
    name = one_name(positional, name)
    with reporting():
        emit(client(ctx).get_batch_endpoint(name), fmt, None, query)


@group.command("update")
@names
@name_option
@file_option
@set_option
@no_wait_option
@output_option()
@click.pass_context
def update(ctx: click.Context, positional: tuple[str, ...], name: str | None, file: str | None,
           sets: tuple[str, ...], no_wait: bool, fmt: str, query: str | None) -> None:
    """Change an endpoint from a file and/or `--set defaults.deployment_name=D ...`."""
    from appliance.client import documents_from_files

    if not (file or sets):
        raise click.UsageError("nothing to update: give -f FILE and/or --set FIELD=VALUE ...")
    with reporting():
        c = client(ctx)
        if file:
            docs = documents_from_files([file])
        else:
            current = c.get_batch_endpoint(one_name(positional, name))
            docs = [{"body": spec_of("batch_endpoint", current), "source": "<command line>", "base": os.getcwd()}]
        body = docs[0]["body"]
        body["$schema"] = "batchEndpoint.schema.json"
        if name or positional:
            body["name"] = one_name(positional, name)
        apply_sets(body, "batch_endpoint", sets)
        warn_all(c.apply_batch(docs))
        emit(c.get_batch_endpoint(body["name"]), fmt, None, query)


@group.command("delete")
@names
@name_option
@yes_option
@no_wait_option
@click.pass_context
def delete(ctx: click.Context, positional: tuple[str, ...], name: str | None, yes: bool, no_wait: bool) -> None:
    """Delete a batch endpoint, its deployments and jobs (running ones are canceled)."""
    name = one_name(positional, name)
    confirm(yes, f"Delete batch endpoint {name}, its deployments and jobs?",
            "deleting a batch endpoint deletes its deployments and cancels its jobs")
    with reporting():
        client(ctx).delete_batch_endpoint(name)
    output.note(f"batch endpoint {name} deleted")


@group.command("list-jobs")
@names
@name_option
@output_option()
@click.pass_context
def list_jobs(ctx: click.Context, positional: tuple[str, ...], name: str | None, fmt: str,
              query: str | None) -> None:
    """The endpoint's jobs, newest first."""
    name = one_name(positional, name)
    with reporting():
        emit(client(ctx).list_jobs(endpoint=name), fmt, JOB_COLUMNS, query)


@group.command("invoke")
@names
@name_option
@click.option("--input", "input_", required=True,
              help="A local folder or file, or a data asset: azureml:NAME@latest, azureml:NAME:VERSION.")
@click.option("--input-type", type=click.Choice(["uri_folder", "uri_file"]),
              help="Default: uri_folder for a folder, uri_file for a file.")
@click.option("-d", "--deployment-name", "deployment", help="Default: the endpoint's default deployment.")
@click.option("--output-path", help="Folder for the output (default: the job's own folder).")
@click.option("--mini-batch-size", type=click.IntRange(1), help="Files per run() call (default: the deployment's).")
@click.option("--instance-count", type=click.IntRange(1), help="Instances (default: the deployment's).")
@click.option("--set", "sets", multiple=True, metavar="FIELD=VALUE ...",
              help=f"Job settings: {', '.join(INVOKE_SETS)} (e.g. --set output_file_name=scores.csv).")
@click.option("--stream", is_flag=True, help="Then follow the job until it ends, as `appliance job stream`.")
@output_option()
@click.pass_context
def invoke(ctx: click.Context, positional: tuple[str, ...], name: str | None, input_: str, input_type: str | None,
           deployment: str | None, output_path: str | None, mini_batch_size: int | None,
           instance_count: int | None, sets: tuple[str, ...], stream: bool, fmt: str, query: str | None) -> None:
    """Start a scoring job on the endpoint's default (or the named) deployment; prints the job
    (`--query name -o tsv`: its name)."""
    name = one_name(positional, name)
    settings = _invoke_sets(sets)
    with reporting():
        c = client(ctx)
        job = c.invoke_batch_endpoint(
            name, resolve_path(input_), input_type=input_type, deployment_name=deployment,
            output_path=resolve_path(output_path) if output_path else None,
            output_file_name=settings.get("output_file_name"),
            mini_batch_size=mini_batch_size or settings.get("mini_batch_size"),
            instance_count=instance_count or settings.get("instance_count"))
        if not stream or query:  # streamed: the bar says it all, unless a value was asked for
            emit(job, fmt, None, query)
        if stream:
            from appliance.cli.job import finish, follow

            finish(follow(c, job["name"]))
        else:
            output.hint(f"next: appliance job stream -n {job['name']}")


def _invoke_sets(items: tuple[str, ...]) -> dict[str, Any]:
    """`--set output_file_name=F mini_batch_size=N instance_count=N`, checked before anything is sent."""
    settings: dict[str, Any] = pairs(items, "--set")
    unknown = sorted(set(settings) - set(INVOKE_SETS))
    if unknown:
        raise click.BadParameter(f"invoke can set {', '.join(INVOKE_SETS)}, not {', '.join(unknown)}",
                                 param_hint="--set")
    for key in ("mini_batch_size", "instance_count"):
        if key in settings:
            if not settings[key].isdigit() or int(settings[key]) < 1:
                raise click.BadParameter(f"{key} must be a whole number of at least 1, not {settings[key]!r}",
                                         param_hint="--set")
            settings[key] = int(settings[key])
    return settings
