"""`appliance model` and `appliance environment`: az ml's verbs and flags for registered assets."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from appliance.cli import output
from appliance.cli.common import (
    Group,
    apply_sets,
    client,
    file_option,
    follow_stream,
    one_name,
    reporting,
    resolve_path,
    set_option,
)
from appliance.cli.output import Column, emit, output_option

MODEL_COLUMNS: list[Column] = [
    ("NAME", lambda m: m["name"]), ("VERSION", lambda m: m["version"]), ("TYPE", lambda m: m["spec"].get("type")
                                                                          if isinstance(m.get("spec"), dict) else None),
    ("FRAMEWORK", lambda m: m["framework"]), ("DIGEST", lambda m: m["digest"][:12]),
    ("CREATED", lambda m: m["created_at"])]
ENV_COLUMNS: list[Column] = [("NAME", lambda e: e["name"]), ("VERSION", lambda e: e["version"]),
                             ("IMAGE", lambda e: e["spec"].get("image")), ("DIGEST", lambda e: e["digest"][:12])]
names = click.argument("positional", nargs=-1, metavar="[NAME]")
name_option = click.option("-n", "--name", "name", help="The asset's name.")
version_option = click.option("-v", "--version", help="Default: the latest.")


@click.group(cls=Group)
def model() -> None:
    """Registered models (az ml model)."""


@model.command("create")
@file_option
@name_option
@version_option
@click.option("-p", "--path", type=click.Path(exists=True), help="A model file or folder.")
@click.option("-t", "--type", "type_", type=click.Choice(["custom_model", "mlflow_model", "triton_model"]),
              help="Default: custom_model.")
@click.option("--framework", type=click.Choice(["onnx", "custom"]), help="Default: onnx for a .onnx file.")
@click.option("-d", "--description")
@click.option("--tags", "--tag", "tags", multiple=True, help="key=value; repeatable.")
@set_option
@output_option()
@click.pass_context
def model_create(ctx: click.Context, file: str | None, name: str | None, version: str | None, path: str | None,
                 type_: str | None, framework: str | None, description: str | None, tags: tuple[str, ...],
                 sets: tuple[str, ...], fmt: str, query: str | None) -> None:
    """Register a model (from -f FILE, or --name and --path); the same files registered again are stored once."""
    from appliance.cli.common import pairs
    from appliance.specs import read_yaml

    with reporting():
        body: dict[str, Any] = dict(read_yaml(file)[0]) if file else {}
        base = str(Path(file).resolve().parent) if file else os.getcwd()
        body["$schema"] = "model.schema.json"
        given = {"name": name, "version": version, "type": type_, "framework": framework, "description": description}
        body.update({k: v for k, v in given.items() if v is not None})
        if path:
            body["path"] = resolve_path(path)
        if tags:
            body["tags"] = {**body.get("tags", {}), **pairs(tags, "--tags")}
        apply_sets(body, "model", sets)
        if "name" not in body or "path" not in body:
            raise click.UsageError("give -f FILE, or --name NAME and --path PATH")
        result = client(ctx).create_model(body, base)
        emit(result, fmt, None, query)
    output.hint(f"next: use it in a deployment as model: azureml:{result['name']}:{result['version']}")


@model.command("list")
@name_option
@click.option("--include-archived", is_flag=True, help="Archived versions too.")
@output_option()
@click.pass_context
def model_list(ctx: click.Context, name: str | None, include_archived: bool, fmt: str, query: str | None) -> None:
    """Registered models, every version."""
    with reporting():
        rows = client(ctx).list_models(name)
    if not include_archived:
        rows = [m for m in rows if not m.get("archived")]
    emit(rows, fmt, MODEL_COLUMNS, query)


@model.command("show")
@names
@name_option
@version_option
@output_option()
@click.pass_context
def model_show(ctx: click.Context, positional: tuple[str, ...], name: str | None, version: str | None, fmt: str,
               query: str | None) -> None:
    """One model version."""
    name = one_name(positional, name)
    with reporting():
        emit(client(ctx).get_model(name, version), fmt, None, query)


@model.command("archive")
@names
@name_option
@version_option
@click.pass_context
def model_archive(ctx: click.Context, positional: tuple[str, ...], name: str | None, version: str | None) -> None:
    """Archive a model version (or every version): hidden from `list`, still usable by name:version."""
    name = one_name(positional, name)
    with reporting():
        client(ctx).archive_model(name, version, True)
    output.note(f"model {name}{':' + version if version else ''} archived")


@model.command("restore")
@names
@name_option
@version_option
@click.pass_context
def model_restore(ctx: click.Context, positional: tuple[str, ...], name: str | None, version: str | None) -> None:
    """Undo `archive`."""
    name = one_name(positional, name)
    with reporting():
        client(ctx).archive_model(name, version, False)
    output.note(f"model {name}{':' + version if version else ''} restored")


@click.group(cls=Group)
def environment() -> None:
    """Registered environments (az ml environment)."""


@environment.command("create")
@file_option
@name_option
@click.option("-v", "--version", help="Default: the next number.")
@click.option("--conda-file", type=click.Path(exists=True, dir_okay=False), help="A conda YAML.")
@click.option("-i", "--image", help="The base image (or the custom container).")
@click.option("-b", "--build", "build", type=click.Path(exists=True, file_okay=False),
              help="A Docker build context folder.")
@click.option("-d", "--description")
@set_option
@output_option()
@click.pass_context
def environment_create(ctx: click.Context, file: str | None, name: str | None, version: str | None,
                       conda_file: str | None, image: str | None, build: str | None, description: str | None,
                       sets: tuple[str, ...], fmt: str, query: str | None) -> None:
    """Register an environment: -f FILE, or --name with --image and/or --conda-file (or --build)."""
    from appliance.specs import read_yaml

    with reporting():
        body: dict[str, Any] = dict(read_yaml(file)[0]) if file else {}
        body["$schema"] = "environment.schema.json"
        given = {"name": name, "version": version, "image": image, "description": description}
        body.update({k: v for k, v in given.items() if v is not None})
        if conda_file:
            body["conda_file"] = resolve_path(conda_file)
        if build:
            body["build"] = {"path": resolve_path(build)}
        apply_sets(body, "environment", sets)
        if "name" not in body:
            raise click.UsageError("give -f FILE, or --name NAME with --image and/or --conda-file")
        source = str(Path(file).resolve()) if file else "<command line>"
        c = client(ctx)
        result = c.apply([{"body": body, "source": source, "base": str(Path(source).parent) if file else os.getcwd()}],
                         create_only=True)
        for warning in result.get("warnings", []):
            output.warn(warning)
        applied = next(item for item in result["applied"] if item["kind"] == "environment")
        emit(c.get_environment(applied["name"], str(applied.get("version") or "") or None), fmt, None, query)
    output.hint(f"next: use it in a deployment as environment: azureml:{applied['name']}:{applied.get('version')}")


@environment.command("list")
@output_option()
@click.pass_context
def environment_list(ctx: click.Context, fmt: str, query: str | None) -> None:
    """Registered environments, every version."""
    with reporting():
        emit(client(ctx).list_environments(), fmt, ENV_COLUMNS, query)


@environment.command("show")
@names
@name_option
@version_option
@output_option()
@click.pass_context
def environment_show(ctx: click.Context, positional: tuple[str, ...], name: str | None, version: str | None,
                     fmt: str, query: str | None) -> None:
    """One environment version."""
    name = one_name(positional, name)
    with reporting():
        emit(client(ctx).get_environment(name, version), fmt, None, query)


@environment.command("build")
@names
@name_option
@output_option()
@click.pass_context
def environment_build(ctx: click.Context, positional: tuple[str, ...], name: str | None, fmt: str,
                      query: str | None) -> None:
    """Build NAME[:VERSION] into an image (docker); unchanged environments are a cache hit."""
    env_name, _, version = one_name(positional, name).partition(":")
    with reporting():
        result = follow_stream(client(ctx).build_environment(env_name, version or None))
    emit(result, fmt, None, query)
