"""What every command group shares: the options `az ml` scripts pass everywhere, the client, errors,
`--set` pairs and path resolution against the caller. Light imports only: a command starts fast."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from appliance.cli import output

if TYPE_CHECKING:
    from appliance.client import Client

WAIT = 1800  # s: how long apply and deployment create/update wait for a deployment to be ready or failed

# Fields whose values are paths: given on the command line they are relative to the caller's directory.
PATH_FIELDS = {"path", "model", "model.path", "code_configuration.code", "code", "conda_file",
               "environment.conda_file", "build.path", "environment.build.path"}


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if value is not None:
        ctx.find_root().meta[f"appliance.{param.name}"] = value
    return value


class Command(click.Command):
    """A command with the options every `az ml` command accepts: --home/--url (where the daemon is),
    --local (accepted: everything is local), -g/-w (Azure's workspace, ignored); and `--set a=1 b=2`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        have = {opt for p in self.params for opt in getattr(p, "opts", [])}
        extra = [
            click.Option(["--home"], expose_value=False, is_eager=True, callback=_remember,
                         help="State folder of the daemon to talk to (default $APPLIANCE_HOME or ~/.appliance)."),
            click.Option(["--url"], expose_value=False, is_eager=True, callback=_remember,
                         help="The daemon's URL (default $APPLIANCE_URL, or the one serving --home)."),
            click.Option(["--local"], is_flag=True, expose_value=False,
                         help="Accepted, as az ml's: everything is local."),
            click.Option(["-g", "--resource-group"], expose_value=False, hidden=True),
            click.Option(["-w", "--workspace-name"], expose_value=False, hidden=True),
            click.Option(["--subscription"], expose_value=False, hidden=True),
        ]
        self.params += [p for p in extra if not set(p.opts) & have]

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, expand_sets(args))


class Group(click.Group):
    command_class = Command
    group_class = type  # subgroups are Groups too


def expand_sets(args: list[str]) -> list[str]:
    """`--set a=1 b=2` (az's form: several pairs after one flag) → `--set a=1 --set b=2`."""
    result: list[str] = []
    in_set = pending = False
    for arg in args:
        if in_set and not arg.startswith("-") and "=" in arg:
            result += ["--set", arg]
            pending = False
            continue
        if pending:  # `--set` with no pair after it: click reports it
            result.append("--set")
        in_set = pending = False
        if arg == "--set":
            in_set = pending = True
        elif arg.startswith("--set="):
            result += ["--set", arg.removeprefix("--set=")]
            in_set = True
        else:
            result.append(arg)
    if pending:
        result.append("--set")
    return result


def client(ctx: click.Context) -> Client:
    from appliance.client import Client

    meta = ctx.find_root().meta
    return Client(url=meta.get("appliance.url") or (ctx.find_root().obj or {}).get("url"),
                  home=meta.get("appliance.home") or (ctx.find_root().obj or {}).get("home"))


@contextmanager
def reporting() -> Iterator[None]:
    """Errors from the daemon or from bad input: one clear line on stderr, a non-zero exit."""
    from appliance.client import ApiError

    try:
        yield
    except ApiError as exc:
        output.fail(exc.message)
        sys.exit(1 if exc.status else 3)
    except Exception as exc:
        errors = sys.modules.get("appliance.specs.errors")  # not imported: no SpecError can have been raised
        if errors is None or not isinstance(exc, errors.SpecError):
            raise
        output.fail(str(exc))
        sys.exit(2)


def follow_stream(events: Any) -> dict[str, Any]:
    """Progress lines to stderr as they come; the result, or a failure with its message."""
    from appliance.client import ApiError

    for event in events:
        if "log" in event:
            output.progress(event["log"])
        elif "error" in event:
            raise ApiError(event["error"], 400)
        else:
            return event["result"]
    raise ApiError("the daemon ended the stream without a result", 500)


def duration(text: str, option: str) -> float:
    """`90`, `30s`, `5m`, `2h`, `1d` → seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "s")
    try:
        value = float(number) * units[unit]
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a duration like 30s, 5m or 2h", param_hint=option) from None
    if not 0 < value < float("inf"):
        raise click.BadParameter(f"{text!r} must be a positive, finite duration", param_hint=option)
    return value


def pairs(items: tuple[str, ...] | list[str], option: str) -> dict[str, str]:
    result = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not key=value", param_hint=option)
        result[key] = value
    return result


def resolve_path(value: str, base: str | Path | None = None) -> str:
    """A path given by the caller, made absolute against `base` (default: the caller's directory);
    registry references (azureml:...) and URLs are left alone."""
    if not value or value.startswith("azureml:") or "://" in value:
        return value
    return str((Path(base or os.getcwd()) / os.path.expanduser(value)).resolve())


def command_line_sets(kind: str, items: tuple[str, ...], option: str = "--set") -> dict[str, str]:
    """`--set` pairs checked (an unknown field is an error, with a suggestion) and with path fields made
    absolute against the caller's directory, before anything is sent."""
    from appliance.specs.documents import check_set_key

    result = pairs(items, option)
    for key, value in result.items():
        check_set_key(kind, key)
        if key in PATH_FIELDS:
            result[key] = resolve_path(value)
    return result


def apply_sets(body: dict[str, Any], kind: str, items: tuple[str, ...]) -> None:
    """`--set` on a document read from a file: checked first, so that a refusal changes nothing."""
    from appliance.specs import set_field

    sets = command_line_sets(kind, items)
    for key, value in sets.items():
        set_field(body, key, value)


def one_name(positional: tuple[str, ...], name: str | None, what: str = "name") -> str:
    """`-n NAME` or, as the short commands of old, a positional NAME."""
    value = name or (positional[0] if positional else None)
    if not value:
        raise click.UsageError(f"give the {what}: -n/--name {what.upper()}")
    if len(positional) > (0 if name else 1):
        raise click.UsageError(f"unexpected argument {positional[-1]!r}")
    return value


def endpoint_and_name(positional: tuple[str, ...], endpoint: str | None, name: str | None,
                      need_name: bool = True) -> tuple[str, str]:
    """`-e EP -n NAME`, or the positional `EP NAME` of the short commands (either may mix)."""
    rest = list(positional)
    endpoint = endpoint or (rest.pop(0) if rest else None)
    name = name or (rest.pop(0) if rest and need_name else None)
    if rest:
        raise click.UsageError(f"unexpected argument {rest[0]!r}")
    if not endpoint:
        raise click.UsageError("give the endpoint: -e/--endpoint-name ENDPOINT")
    if need_name and not name:
        raise click.UsageError("give the deployment: -n/--name NAME")
    return endpoint, name or ""


name_option = click.option("-n", "--name", "name", help="The resource's name.")
endpoint_option = click.option("-e", "--endpoint-name", "--endpoint", "endpoint", help="The endpoint's name.")
file_option = click.option("-f", "--file", "file", type=click.Path(dir_okay=False, exists=True),
                           help="Azure ML CLI v2 YAML.")
set_option = click.option("--set", "sets", multiple=True, metavar="FIELD=VALUE ...",
                          help="Fields to set: --set instance_count=2 request_settings.request_timeout_ms=9000 "
                               "(several pairs after one --set, as az; values typed as YAML 1.2/JSON).")
no_wait_option = click.option("--no-wait", is_flag=True, help="Return at once, without waiting for the result.")
yes_option = click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")


def confirm(yes: bool, question: str, consequence: str) -> None:
    """A destructive command's confirmation: asked on a terminal; elsewhere it needs --yes (exit 2)."""
    if yes:
        return
    if not sys.stdin.isatty():
        output.fail(f"{consequence}; pass --yes to confirm")
        sys.exit(2)
    click.confirm(question, abort=True, err=True)
