"""`appliance data`: az ml's verbs and flags for data assets, the inputs of batch jobs
(`batch-endpoint invoke --input azureml:NAME@latest`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from appliance.cli import output
from appliance.cli.common import Group, apply_sets, client, file_option, one_name, reporting, resolve_path, set_option
from appliance.cli.output import Column, emit, output_option

COLUMNS: list[Column] = [("NAME", lambda d: d["name"]), ("VERSION", lambda d: d["version"]),
                         ("TYPE", lambda d: d.get("type")), ("PATH", lambda d: d.get("path")),
                         ("CREATED", lambda d: d.get("created_at"))]
names = click.argument("positional", nargs=-1, metavar="[NAME]")
name_option = click.option("-n", "--name", "name", help="The data asset's name.")


@click.group(cls=Group)
def group() -> None:
    """Data assets (az ml data)."""


@group.command("create")
@file_option
@name_option
@click.option("-v", "--version", help="Default: the next number.")
@click.option("-p", "--path", help="A local folder or file (copied into the appliance's store).")
@click.option("-t", "--type", "type_", type=click.Choice(["uri_folder", "uri_file"]), help="Default: uri_folder.")
@click.option("-d", "--description")
@set_option
@output_option()
@click.pass_context
def create(ctx: click.Context, file: str | None, name: str | None, version: str | None, path: str | None,
           type_: str | None, description: str | None, sets: tuple[str, ...], fmt: str, query: str | None) -> None:
    """Register a data asset: -f FILE, or --name, --path and --type."""
    from appliance.specs import read_yaml

    with reporting():
        body: dict[str, Any] = dict(read_yaml(file)[0]) if file else {}
        body["$schema"] = "data.schema.json"
        given = {"name": name, "version": version, "type": type_, "description": description}
        body.update({k: v for k, v in given.items() if v is not None})
        if path:
            body["path"] = resolve_path(path)
        apply_sets(body, "data", sets)
        if "name" not in body or "path" not in body:
            raise click.UsageError("give -f FILE, or --name NAME and --path PATH")
        source = str(Path(file).resolve()) if file else "<command line>"
        result = client(ctx).create_data(body, source, str(Path(source).parent) if file else os.getcwd())
        emit(result, fmt, None, query)
    output.hint(f"next: appliance batch-endpoint invoke -n <endpoint> --input {result['id']}")


@group.command("list")
@name_option
@output_option()
@click.pass_context
def list_(ctx: click.Context, name: str | None, fmt: str, query: str | None) -> None:
    """Data assets, every version (or NAME's)."""
    with reporting():
        emit(client(ctx).list_data(name), fmt, COLUMNS, query)


@group.command("show")
@names
@name_option
@click.option("-v", "--version", help="Default: the latest.")
@output_option()
@click.pass_context
def show(ctx: click.Context, positional: tuple[str, ...], name: str | None, version: str | None, fmt: str,
         query: str | None) -> None:
    """One data asset version: its stored path, type, id (azureml:NAME:VERSION)."""
    name = one_name(positional, name)
    with reporting():
        emit(client(ctx).get_data(name, version), fmt, None, query)
