"""Printing: data on stdout as a table, JSON or YAML; messages on stderr. The only module that prints."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import click
import yaml
from rich.console import Console
from rich.table import Table

FORMATS = click.Choice(["table", "json", "yaml"])
output_option = click.option("-o", "--output", "fmt", type=FORMATS, default="table", show_default=True,
                             help="Output format.")

stderr = Console(stderr=True, highlight=False, soft_wrap=True)

Column = tuple[str, Callable[[dict[str, Any]], Any]]


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def emit(data: Any, fmt: str, columns: Sequence[Column] | None = None) -> None:
    """A list of rows (with `columns` for the table) or one object (a two-column table)."""
    if fmt == "json":
        click.echo(json.dumps(_plain(data), indent=2, default=str))
    elif fmt == "yaml":
        click.echo(yaml.safe_dump(_plain(data), sort_keys=False, default_flow_style=False).rstrip())
    else:
        console = Console(highlight=False, soft_wrap=not sys.stdout.isatty())
        if isinstance(data, list):
            table = Table(box=None, header_style="bold", pad_edge=False)
            for title, _ in columns or []:
                table.add_column(title)
            for row in data:
                table.add_row(*(_cell(get(row)) for _, get in columns or []))
        else:
            table = Table(box=None, show_header=False, pad_edge=False)
            table.add_column(style="bold")
            table.add_column()
            for key, value in data.items():
                table.add_row(key, _cell(value))
        console.print(table)


def _cell(value: Any) -> str:
    if value is None or value == {} or value == []:
        return "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_cell(v) for v in value)
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    return str(value)


def progress(line: str) -> None:
    """A line of a build's output, dimmed, on stderr."""
    stderr.print(line, style="dim", markup=False, highlight=False)


def note(message: str) -> None:
    stderr.print(message)


def warn(message: str) -> None:
    stderr.print(f"[yellow]warning:[/yellow] {message}")


def fail(message: str) -> None:
    stderr.print(f"[red]error:[/red] {message}", markup=True)
