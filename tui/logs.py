"""A deployment's logs, live: the workers' stdout/stderr (and build output), polled with the API's cursor."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType

from tui.source import DataSource
from tui.tail import TailLog
from tui.view import Selection, View


def log_line(line: dict[str, Any]) -> str:
    at = str(line.get("at") or "")
    stream = "ERR" if line.get("stream") == "stderr" else "OUT"
    return f"{at[11:23]} {line.get('instance', ''):<10} {stream} {line.get('text', '')}"


class LogsView(View):
    NAME = "logs"
    HINTS: ClassVar[list[tuple[str, str]]] = [("space", "pause"), ("end", "follow"), ("/", "search"),
                                              ("esc", "back")]
    BINDINGS: ClassVar[list[BindingType]] = [Binding("space", "pause", "pause/resume")]

    def __init__(self, endpoint: str, deployment: str, cap: int = 10_000) -> None:
        super().__init__()
        self.endpoint, self.deployment, self.cap = endpoint, deployment, cap
        self.cursor: str | None = None

    def body(self) -> ComposeResult:
        yield TailLog(self.cap, id="tail")

    def title_text(self) -> Text:
        tail = self.query_one(TailLog)
        return Text.assemble((self.NAME, "bold"), f" · {self.endpoint}/{self.deployment} ",
                             (f"({'paused' if tail.paused else 'live'}, {len(tail.buffer):,} lines, "
                              f"{tail.dropped:,} dropped)", "yellow" if tail.paused else ""))

    def fetch(self, source: DataSource) -> Any:
        if self.cursor is None:
            return source.deployment_logs(self.endpoint, self.deployment, tail=500)
        return source.deployment_logs(self.endpoint, self.deployment, cursor=self.cursor)

    def show(self, data: Any) -> None:
        self.cursor = data.get("cursor") or self.cursor
        lines = data.get("lines") or []
        if lines:
            self.query_one(TailLog).write_batch((line, log_line(line)) for line in lines)
        self.refresh_chrome()

    def action_pause(self) -> None:
        self.query_one(TailLog).toggle_pause()
        self.refresh_chrome()

    def set_filter(self, text: str) -> None:
        super().set_filter(text)
        needle = text.lower()
        self.query_one(TailLog).set_match((lambda _, line: needle in line.lower()) if text else None,
                                          [text] if text else [])

    def selected(self) -> Selection | None:
        return Selection("deployment", self.deployment, self.endpoint)
