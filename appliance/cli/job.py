"""`appliance job`: az ml's verbs for the scoring jobs batch endpoints start (show, list, stream, cancel, download)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from appliance.cli import output
from appliance.cli.common import Group, client, one_name, reporting
from appliance.cli.output import Column, emit, output_option

if TYPE_CHECKING:
    from appliance.client import Client

POLL = 0.5  # s between looks at a streamed job
QUIET = 5.0  # s a piped `stream` may stay silent while nothing changes
TERMINAL = ("Completed", "Failed", "Canceled")


def _progress(job: dict[str, Any]) -> dict[str, Any]:
    """The job's counters, zero while it has none yet (Preparing)."""
    return {k: v or 0 for k, v in (job.get("progress") or {}).items()}


def _done(job: dict[str, Any], what: str) -> str:
    """`6/10`: mini-batches or items finished (scored or failed for good) of all."""
    p = _progress(job)
    if what == "items":
        return f"{p.get('items_succeeded', 0) + p.get('items_failed', 0)}/{p.get('items', 0)}"
    return f"{p.get('mini_batches_done', 0) + p.get('mini_batches_failed', 0)}/{p.get('mini_batches', 0)}"


JOB_COLUMNS: list[Column] = [
    ("NAME", lambda j: j["name"]), ("STATUS", lambda j: j["status"]), ("ENDPOINT", lambda j: j.get("endpoint_name")),
    ("DEPLOYMENT", lambda j: j.get("deployment_name")), ("MINI-BATCHES", lambda j: _done(j, "mini_batches")),
    ("ITEMS", lambda j: _done(j, "items")), ("FAILED", lambda j: _progress(j).get("items_failed", 0)),
    ("CREATED", lambda j: j.get("created_at"))]
names = click.argument("positional", nargs=-1, metavar="[NAME]")
name_option = click.option("-n", "--name", "name", help="The job's name.")


@click.group(cls=Group)
def group() -> None:
    """Batch scoring jobs (az ml job)."""


@group.command("show")
@names
@name_option
@click.option("--web", is_flag=True, help="Accepted, as az ml's: there is no studio here, the job is printed.")
@output_option()
@click.pass_context
def show(ctx: click.Context, positional: tuple[str, ...], name: str | None, web: bool, fmt: str,
         query: str | None) -> None:
    """One job: status, input, outputs, progress, error, log files."""
    name = one_name(positional, name)
    with reporting():
        emit(client(ctx).get_job(name), fmt, None, query)


@group.command("list")
@click.option("-e", "--endpoint-name", "endpoint", help="Only this batch endpoint's jobs.")
@output_option()
@click.pass_context
def list_(ctx: click.Context, endpoint: str | None, fmt: str, query: str | None) -> None:
    """Jobs, newest first."""
    with reporting():
        emit(client(ctx).list_jobs(endpoint), fmt, JOB_COLUMNS, query)


@group.command("cancel")
@names
@name_option
@output_option()
@click.pass_context
def cancel(ctx: click.Context, positional: tuple[str, ...], name: str | None, fmt: str, query: str | None) -> None:
    """Stop a job: running mini-batches are ended, what was scored stays in its output."""
    name = one_name(positional, name)
    with reporting():
        emit(client(ctx).cancel_job(name), fmt, None, query)


@group.command("download")
@names
@name_option
@click.option("--output-name", default="score", show_default=True, help="The named output to download.")
@click.option("-p", "--download-path", type=click.Path(file_okay=False), default=".", show_default=True,
              help="Folder to download into (as Azure: DIR/named-outputs/OUTPUT/).")
@click.pass_context
def download(ctx: click.Context, positional: tuple[str, ...], name: str | None, output_name: str,
             download_path: str) -> None:
    """Copy a job's output files to DIR/named-outputs/score/, the layout Azure's scripts read."""
    import shutil

    from appliance.specs.errors import SpecError

    name = one_name(positional, name)
    with reporting():
        job = client(ctx).get_job(name)
        outputs = job.get("outputs") or {}
        if output_name not in outputs:
            raise SpecError(f"job {name} has no output named {output_name!r}; its outputs: "
                            f"{', '.join(repr(k) for k in outputs) or 'none'}", field="--output-name")
        source = Path(outputs[output_name]["path"])
        if not source.exists():
            raise SpecError(f"job {name} ({job['status']}) has no {output_name} output at {source} on this machine "
                            "yet", field="--output-name")
        target = Path(download_path) / "named-outputs" / output_name
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    output.note(f"job {name}: {output_name} output downloaded to {target}")


@group.command("stream")
@names
@name_option
@click.pass_context
def stream(ctx: click.Context, positional: tuple[str, ...], name: str | None) -> None:
    """Follow a job until it ends: exit 0 when Completed, 1 when Failed or Canceled."""
    name = one_name(positional, name)
    with reporting():
        finish(follow(client(ctx), name))


def follow(c: Client, name: str) -> dict[str, Any]:
    """The job, polled until it ends: a live bar on a terminal, plain lines when piped."""
    return _follow_bar(c, name) if sys.stdout.isatty() else _follow_lines(c, name)


def finish(job: dict[str, Any]) -> None:
    """How a followed job ended, and the exit code scripts check."""
    if job["status"] == "Completed":
        output.note(f"job {job['name']}: Completed; {summary(job)}")
        return
    output.fail(f"job {job['name']} {job['status'].lower()}" + (f": {job['error']}" if job.get("error") else ""))
    sys.exit(1)


def summary(job: dict[str, Any]) -> str:
    """`6/10 mini-batches, 12/20 items, 0 failed, 0 retries`."""
    p = _progress(job)
    return (f"{_done(job, 'mini_batches')} mini-batches, {_done(job, 'items')} items, {p.get('items_failed', 0)} "
            f"failed, {p.get('retries', 0)} retries")


def _follow_lines(c: Client, name: str) -> dict[str, Any]:
    """One line when the counters change, or every QUIET seconds: a log or CI shows the job is alive."""
    said, at = "", 0.0
    while True:
        job = c.get_job(name)
        line = f"{job['status']}: {summary(job)}"
        if line != said or time.monotonic() - at >= QUIET:
            click.echo(line)
            said, at = line, time.monotonic()
        if job["status"] in TERMINAL:
            return job
        time.sleep(POLL)


def _follow_bar(c: Client, name: str) -> dict[str, Any]:
    """Two lines that fit 80 columns: the state, a bar of mini-batches and the time; then items, failures,
    retries, rate and ETA."""
    from rich.console import Group
    from rich.live import Live
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.text import Text

    output.note(f"following job {name} (ctrl-c stops following; the job goes on)")
    bar = Progress(TextColumn("{task.description:<10}", markup=False), BarColumn(bar_width=30),
                   MofNCompleteColumn(), TextColumn("mini-batches"), TimeElapsedColumn())
    task = bar.add_task("Preparing", total=None)
    detail = Text()
    with Live(Group(bar, detail), refresh_per_second=4, transient=False):
        while True:
            job = c.get_job(name)
            p = _progress(job)
            bar.update(task, description=job["status"], total=p.get("mini_batches") or None,
                       completed=p.get("mini_batches_done", 0) + p.get("mini_batches_failed", 0))
            detail.plain = (f"{_done(job, 'items')} items · {p.get('items_failed', 0)} failed · "
                            f"{p.get('retries', 0)} retries · {_rate(job)}")
            if job["status"] in TERMINAL:
                return job
            time.sleep(POLL)


def _rate(job: dict[str, Any]) -> str:
    """`2.50 items/s, ETA 4s`; dashes while the daemon has no estimate (starting, ended)."""
    p = job.get("progress") or {}
    speed = output.number(float(p["items_per_second"])) if p.get("items_per_second") else "-"
    eta = f"{p['eta_seconds']:.0f}s" if p.get("eta_seconds") else "-"
    return f"{speed} items/s · ETA {eta}"
