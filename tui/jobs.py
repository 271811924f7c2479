"""Batch jobs: progress bars, state, failures; `c` cancels (with confirmation); `l` a job's logs."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType

from tui.endpoints import state_text
from tui.format import bar, eta, rate
from tui.logs import TailLog
from tui.source import DataSource
from tui.table import Col, LiveTable
from tui.view import Selection, View


def progress_cell(p: dict[str, Any], width: int = 12) -> Text:
    total = p.get("mini_batches") or 0
    done = (p.get("mini_batches_done") or 0) + (p.get("mini_batches_failed") or 0)
    fraction = done / total if total else 0.0
    failed = p.get("mini_batches_failed") or 0
    return Text.assemble((bar(fraction, width), "red" if failed else "cyan"), f" {fraction * 100:>3.0f}%")


class JobsView(View):
    NAME = "jobs"
    HINTS: ClassVar[list[tuple[str, str]]] = [("c", "cancel"), ("l", "logs"), ("d", "describe"), ("y", "yaml"),
                                              ("esc", "back")]
    BINDINGS: ClassVar[list[BindingType]] = [Binding("c", "app.cancel_job", "cancel job")]
    COLUMNS: ClassVar[list[Col]] = [
        Col("name", "NAME", 20), Col("endpoint", "ENDPOINT", 12, 6), Col("progress", "PROGRESS", 17),
        Col("items", "ITEMS", 11, 4, True), Col("failed", "FAILED", 6, 3, True), Col("retries", "RETRY", 5, 7, True),
        Col("speed", "ITEMS/S", 8, 5, True), Col("eta", "ETA", 7, 2, True), Col("state", "STATE", 10),
        Col("error", "ERROR", 40, 8)]

    def __init__(self, endpoint: str | None = None) -> None:
        super().__init__()
        self.endpoint = endpoint
        self.items: dict[str, Selection] = {}

    def body(self) -> ComposeResult:
        yield LiveTable(self.COLUMNS, id="table")

    def title_text(self) -> Text:
        running = sum(1 for s in self.items.values() if s.data.get("status") in ("Running", "Queued"))
        return Text.assemble((self.NAME, "bold"), f" ({len(self.items)}, {running} running)")

    def fetch(self, source: DataSource) -> Any:
        return source.list_jobs(endpoint=self.endpoint)

    def show(self, data: Any) -> None:
        rows: list[tuple[str, list[Any], int]] = []
        items: dict[str, Selection] = {}
        for job in data:
            p = job.get("progress") or {}
            items[job["name"]] = Selection("job", job["name"], job.get("endpoint_name"), job)
            error = str(job.get("error") or "")
            rows.append((job["name"], [
                job["name"], job.get("endpoint_name", ""), progress_cell(p),
                f"{p.get('items_succeeded', 0):,}/{p.get('items', 0):,}",
                Text(str(p.get("items_failed", 0)), "red" if p.get("items_failed") else ""),
                str(p.get("retries", 0)), rate(p.get("items_per_second")),
                eta(p.get("eta_seconds")) if job.get("status") == "Running" else "-",
                state_text(job.get("status")), Text(error.splitlines()[0] if error else "", "red")], 1))
        self.items = items
        self.query_one(LiveTable).set_rows(rows)
        self.refresh_chrome()

    def set_filter(self, text: str) -> None:
        super().set_filter(text)
        self.query_one(LiveTable).set_filter(text)

    def selected(self) -> Selection | None:
        key = self.query_one(LiveTable).selected_key
        return self.items.get(key) if key else None

    def drill(self) -> None:
        sel = self.selected()
        if sel:
            self.logs_of(sel)


class JobLogsView(View):
    """A job's log files (job_progress_overview.txt, the workers' stdout/stderr), the last lines of each."""

    NAME = "job logs"
    HINTS: ClassVar[list[tuple[str, str]]] = [("/", "search"), ("esc", "back")]

    def __init__(self, job: str) -> None:
        super().__init__()
        self.job = job
        self.seen: dict[str, list[str]] = {}

    def body(self) -> ComposeResult:
        yield TailLog(10_000, id="tail")

    def title_text(self) -> Text:
        return Text.assemble((self.NAME, "bold"), f" · {self.job}")

    def fetch(self, source: DataSource) -> Any:
        files = source.job_logs(self.job).get("files") or []
        return {f: source.job_logs(self.job, file=f, lines=200).get("lines") or [] for f in files}

    def show(self, data: Any) -> None:
        if data == self.seen:
            return
        self.seen = data
        tail = self.query_one(TailLog)
        tail.buffer.clear()
        tail.write_batch((None, f"{f}: {line}") for f, lines in data.items() for line in lines)
        tail.rebuild()

    def set_filter(self, text: str) -> None:
        super().set_filter(text)
        needle = text.lower()
        self.query_one(TailLog).set_match((lambda _, line: needle in line.lower()) if text else None,
                                          [text] if text else [])

    def selected(self) -> Selection | None:
        return Selection("job", self.job)
