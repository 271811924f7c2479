"""`batch-endpoint`, `batch-deployment`, `data`, `job`: az ml's groups, named so that a script pasted from
Azure fails clearly (exit 2) instead of with "no such command". Batch is not built yet."""

from __future__ import annotations

import sys
from typing import Any

import click

from appliance.cli import output
from appliance.cli.common import Command

VERBS = {
    "batch-endpoint": ["create", "delete", "invoke", "list", "list-jobs", "show", "update"],
    "batch-deployment": ["create", "delete", "list", "list-jobs", "show", "update"],
    "data": ["archive", "create", "list", "restore", "show"],
    "job": ["cancel", "create", "download", "list", "show", "stream"],
}


class NotBuilt(click.Group):
    """A group whose every verb says batch is not part of this appliance yet, and exits 2."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return VERBS[self.name or ""]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        group = self.name

        def refuse(**_: Any) -> None:
            output.fail(f"`appliance {group} {cmd_name}`: batch endpoints, batch deployments, data assets and jobs "
                        "are not built in this appliance yet; online endpoints are (appliance online-endpoint ...)")
            sys.exit(2)

        return Command(cmd_name, callback=refuse, help=f"Not built yet (az ml {group} {cmd_name}).",
                       context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
                       params=[click.Argument(["rest"], nargs=-1, type=click.UNPROCESSED)])


def group(name: str) -> click.Group:
    return NotBuilt(name, help=f"az ml {name}: not built yet (every verb exits 2).")
