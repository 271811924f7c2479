"""`appliance export ENDPOINT... [--target gateway|istio|kserve] [--out DIR] [--registry REG] [--namespace NS]
[--push] [--format kubernetes|azure] [--force]`."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import click

from appliance.cli import output
from appliance.cli.common import Command, client, follow_stream, reporting


@click.command(cls=Command)
@click.argument("endpoints", nargs=-1, required=True, metavar="ENDPOINT...")
@click.option("--target", type=click.Choice(["gateway", "istio", "kserve"]), default="gateway", show_default=True,
              help="What splits traffic in the cluster: Gateway API HTTPRoute, Istio VirtualService, or KServe.")
@click.option("--format", "fmt", type=click.Choice(["kubernetes", "azure"]), default="kubernetes",
              show_default=True, help="kubernetes: kustomize base + overlays; azure: Azure ML CLI v2 YAML.")
@click.option("--out", "out", default="deploy", show_default=True, type=click.Path(file_okay=False),
              help="Folder the files are written to (must be empty or new, unless --force).")
@click.option("--registry", help="REGISTRY[/PREFIX] the images live in (with --push, they are pushed there and "
                                 "pinned by digest).")
@click.option("--namespace", default="appliance", show_default=True,
              help="The prod overlay's namespace (dev's is NAMESPACE-dev).")
@click.option("--push", is_flag=True, help="Push each deployment's packaged image to --registry, pin its digest.")
@click.option("--force", is_flag=True, help="Write into a folder that has files already (same names overwritten).")
@click.pass_context
def export(ctx: click.Context, endpoints: tuple[str, ...], target: str, fmt: str, out: str, registry: str | None,
           namespace: str, push: bool, force: bool) -> None:
    """Promote endpoints to a Kubernetes cluster (manifests platform teams apply with `kubectl apply -k`),
    or to Azure ML (--format azure). Each online deployment's image is the one `appliance package` makes;
    without --registry/--push the manifests name a placeholder, and say so."""
    folder = Path(out)
    if folder.exists() and any(folder.iterdir()) and not force:
        output.fail(f"{folder} is not empty: choose another --out, or --force to write into it")
        sys.exit(2)
    if push and not registry:
        output.fail("--push needs --registry REG[/PREFIX] to push to")
        sys.exit(2)
    with reporting():
        result = follow_stream(client(ctx).export(list(endpoints), format=fmt, target=target, registry=registry,
                                                  namespace=namespace, push=push))
    for path, text in result["files"].items():
        target_path = folder / path
        target_path.parent.mkdir(parents=True, exist_ok=True)
        target_path.write_text(text, encoding="utf-8")
    for path, source in result.get("copies", {}).items():
        dest = folder / path
        dest.parent.mkdir(parents=True, exist_ok=True)
        if Path(source).is_dir():
            shutil.copytree(source, dest, dirs_exist_ok=True)
        elif Path(source).exists():
            shutil.copyfile(source, dest)
    for warning in result.get("warnings", []):
        output.warn(warning)
    count = len(result["files"]) + len(result.get("copies", {}))
    output.note(f"wrote {count} file(s) to {folder}; see {folder / 'README.md'}")
    click.echo(str(folder))
