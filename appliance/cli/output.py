"""Printing: data on stdout (table, JSON, YAML, TSV), messages on stderr. The only module that prints.

Nothing here reads text as markup: what users wrote (names, errors, log lines) is printed as it is.
Imports stay light: YAML, JMESPath and colours load only when a command asks for them."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import click

FORMATS = ("table", "json", "jsonc", "yaml", "tsv", "none")

Column = tuple[str, Callable[[dict[str, Any]], Any]]


def output_option(default: str = "table") -> Callable[[Any], Any]:
    """`-o/--output` and `--query`, as `az` has them on every command that prints data. Without `-o`, a
    query's result is JSON, as from `az` (`show --query traffic` is a mapping, not a table)."""
    def decorate(f: Any) -> Any:
        @functools.wraps(f)
        def command(*args: Any, fmt: str | None, query: str | None, **kwargs: Any) -> Any:
            return f(*args, fmt=fmt or ("json" if query else default), query=query, **kwargs)

        command = click.option("--query", help="JMESPath query applied to the result (as az --query), "
                               "e.g. provisioning_state or traffic.blue.")(command)
        return click.option("-o", "--output", "fmt", type=click.Choice(FORMATS), default=None,
                            help=f"Output format [default: {default}; json with --query].")(command)
    return decorate


def plain(value: Any) -> Any:
    """JSON-like values: datetimes as ISO text."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def query(data: Any, expression: str | None) -> Any:
    if not expression:
        return data
    import jmespath
    from jmespath.exceptions import JMESPathError

    try:
        return jmespath.search(expression, plain(data))
    except JMESPathError as exc:
        raise click.BadParameter(f"{expression!r} is not a valid JMESPath query: {exc}", param_hint="--query") \
            from None


def emit(data: Any, fmt: str, columns: Sequence[Column] | None = None, expression: str | None = None) -> None:
    """A list of rows (`columns` make the table) or one object (a two-column table); `--query` first."""
    if expression:
        data, columns = query(data, expression), None
    if fmt == "none":
        return
    if fmt in ("json", "jsonc"):
        text = json.dumps(plain(data), indent=2, default=str, ensure_ascii=False)
        if fmt == "jsonc" and sys.stdout.isatty():
            from rich.console import Console
            from rich.json import JSON

            Console(highlight=False).print(JSON(text))
            return
        click.echo(text)
    elif fmt == "yaml":
        import yaml

        click.echo(yaml.safe_dump(plain(data), sort_keys=False, default_flow_style=False,
                                  allow_unicode=True).rstrip())
    elif fmt == "tsv":
        text = tsv(plain(data))
        if text:
            click.echo(text, nl=False)
    elif isinstance(data, list) and columns:
        click.echo(table([title for title, _ in columns], [[cell(get(row)) for _, get in columns] for row in data]),
                   nl=False)
    elif isinstance(data, list) and data and all(isinstance(row, dict) for row in data):
        keys = list(dict.fromkeys(k for row in data for k in row))
        click.echo(table([k.upper() for k in keys], [[cell(row.get(k)) for k in keys] for row in data]), nl=False)
    elif isinstance(data, dict):
        click.echo(table(["FIELD", "VALUE"], [[str(k), cell(v)] for k, v in data.items()]), nl=False)
    elif isinstance(data, list):
        click.echo(table(["VALUE"], [[cell(v)] for v in data]), nl=False)
    elif data is not None:
        click.echo(cell(data))


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """kubectl's layout: a header row, columns padded to their widest cell, never cut."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    lines = []
    for row in [list(headers), *rows]:
        lines.append("   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines) + "\n"


def number(value: float) -> str:
    """A float for people: a few significant digits (JSON keeps it exact)."""
    if value != value or value in (float("inf"), float("-inf")):
        return str(value)
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def cell(value: Any) -> str:
    if value is None or value == {} or value == []:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return number(value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={cell(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(cell(v) for v in value)
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    return str(value)


def _tsv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return str(len(value))  # as az: a nested list shows its length, a nested object nothing
    if isinstance(value, dict):
        return ""
    if isinstance(value, float) and value == int(value) and abs(value) < 1e15:
        return str(value)
    return str(value)


def _tsv_row(value: Any) -> str:
    if isinstance(value, dict):
        return "\t".join(_tsv_value(v) for v in value.values())
    if isinstance(value, list):
        return "\t".join(_tsv_value(v) for v in value)
    return _tsv_value(value)


def tsv(data: Any) -> str:
    """`-o tsv` as az prints it: a scalar bare, an object's values on one line separated by tabs, a list one
    row per item; booleans True/False. What a shell script captures with $(...)."""
    rows = data if isinstance(data, list) else [data]
    if data is None:
        return ""
    return "".join(_tsv_row(row) + "\n" for row in rows)


def _err(text: str) -> None:
    click.echo(text, err=True)


def progress(line: str) -> None:
    """A line of a build's output, dimmed (on a terminal), on stderr."""
    _err(click.style(line, dim=True) if sys.stderr.isatty() else line)


def note(message: str) -> None:
    _err(message)


def hint(message: str) -> None:
    """A next step, for a person at a terminal only (scripts read stdout and need no advice)."""
    if sys.stderr.isatty():
        _err(click.style(message, fg="cyan"))


def warn(message: str) -> None:
    _err(click.style("warning:", fg="yellow") + " " + message)


def fail(message: str) -> None:
    _err(click.style("error:", fg="red") + " " + message)
