"""The `appliance` command: az ml's command groups, each in its own module, imported only when used
(a command starts fast: `python -X importtime -m appliance.cli.main online-endpoint list -o json`)."""

from __future__ import annotations

import importlib
from typing import Any

import click

import appliance
from appliance.cli.common import Group, _remember

# name → (module, attribute, help); aliases are the short names of earlier versions
COMMANDS: dict[str, tuple[str, str, str]] = {
    "up": ("commands", "up", "Start the daemon: control API and data plane in one process."),
    "tui": ("commands", "tui", "The terminal UI, attached to a running daemon (--url URL, --home DIR)."),
    "apply": ("commands", "apply", "Create or update everything in YAML files, in dependency order."),
    "online-endpoint": ("online_endpoint", "group", "Online endpoints (az ml online-endpoint)."),
    "online-deployment": ("online_deployment", "group", "Online deployments (az ml online-deployment)."),
    "model": ("assets", "model", "Registered models (az ml model)."),
    "environment": ("assets", "environment", "Registered environments (az ml environment)."),
    "batch-endpoint": ("batch_endpoint", "group", "Batch endpoints (az ml batch-endpoint)."),
    "batch-deployment": ("batch_deployment", "group", "Batch deployments (az ml batch-deployment)."),
    "data": ("data", "group", "Data assets, the inputs of batch jobs (az ml data)."),
    "job": ("job", "group", "Batch scoring jobs: show, stream, cancel, download (az ml job)."),
    "package": ("commands", "package", "Bake a deployment into a self-contained image."),
    "export": ("export", "export", "Export endpoints as Kubernetes manifests or Azure ML YAML."),
    "request-log": ("commands", "request_log", "The request log's state; switch it on or off."),
    "monitor": ("monitor", "group", "Model monitoring of collected data: drift reports, scheduled monitors."),
}
ALIASES = {"endpoint": "online-endpoint", "deployment": "online-deployment", "env": "environment"}
GLOBAL_WITH_VALUE = ("--home", "--url")


class Root(Group):
    """Loads a group's module on first use; `appliance` with no command behaves like `appliance up`."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        cmd_name = ALIASES.get(cmd_name, cmd_name)
        if cmd_name not in COMMANDS:
            return None
        module, attribute, _ = COMMANDS[cmd_name]
        command: click.Command = getattr(importlib.import_module(f"appliance.cli.{module}"), attribute)
        command.name = cmd_name
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, text) for name, (_, _, text) in COMMANDS.items()]
        rows += [(alias, f"Alias of {target}.") for alias, target in ALIASES.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not _has_command(args):
            args = [*args[: _global_end(args)], "up", *args[_global_end(args):]]
        return super().parse_args(ctx, args)


def _global_end(args: list[str]) -> int:
    """Where the global options (--home X, --url Y) at the front end."""
    i = 0
    while i < len(args):
        if args[i] in GLOBAL_WITH_VALUE:
            i += 2
        elif args[i].startswith(tuple(f"{o}=" for o in GLOBAL_WITH_VALUE)):
            i += 1
        else:
            break
    return i


def _has_command(args: list[str]) -> bool:
    rest = args[_global_end(args):]
    if not rest:
        return False
    return not rest[0].startswith("-") or rest[0] in ("--help", "-h", "--version")


@click.group(cls=Root, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--home", expose_value=False, is_eager=True, callback=_remember,
              help="State folder (default $APPLIANCE_HOME or ~/.appliance); also accepted after any command.")
@click.option("--url", expose_value=False, is_eager=True, callback=_remember,
              help="Daemon URL (default $APPLIANCE_URL, or the one serving --home); also accepted after any command.")
@click.version_option(appliance.__version__, prog_name="appliance")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Azure ML online endpoints and deployments on this machine, with az ml's verbs and flags
    (`appliance online-endpoint show -n EP --query scoring_uri -o tsv`)."""
    ctx.obj = {}


def main(args: Any = None) -> None:
    cli(args=args, prog_name="appliance")


if __name__ == "__main__":  # `python -m appliance.cli.main`: how `up` on a terminal starts its daemon child
    main()
