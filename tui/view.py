"""The base of every view: header, title, body, key hints; polling in a thread worker while on screen."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Static

from tui.format import fit_hints
from tui.header import StatusHeader
from tui.source import ApiError, DataSource

if TYPE_CHECKING:
    from tui.app import ApplianceApp


@dataclass
class Selection:
    """What the cursor is on, for describe/yaml/logs/delete and the actions."""

    kind: str  # endpoint, batch-endpoint, deployment, batch-deployment, job, model, environment, event
    name: str
    endpoint: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


class View(Screen[None]):
    """Subclasses set `NAME`, compose `body()`, `fetch()` in a thread and `show()` on the event loop."""

    NAME: ClassVar[str] = "view"
    HINTS: ClassVar[list[tuple[str, str]]] = []
    BINDINGS: ClassVar[list[BindingType]] = []
    POLL: ClassVar[float | None] = 1.0  # seconds between polls (None: the view polls by itself)

    class Fetched(Message):
        def __init__(self, data: Any, error: str | None, took: float) -> None:
            super().__init__()
            self.data, self.error, self.took = data, error, took

        def can_replace(self, message: Message) -> bool:  # bursts coalesce: only the newest answer matters
            return isinstance(message, View.Fetched)

    def __init__(self) -> None:
        super().__init__()
        self.filter_text = ""
        self.error: str | None = None
        self._polling = False
        self.polls = 0

    @property
    def appliance(self) -> ApplianceApp:
        return self.app  # type: ignore[return-value]

    @property
    def source(self) -> DataSource:
        return self.appliance.source

    def compose(self) -> ComposeResult:
        yield StatusHeader(id="header")
        yield Static(id="title")
        yield from self.body()
        yield Static(id="hints")

    def body(self) -> ComposeResult:
        yield from ()

    def on_mount(self) -> None:
        self.refresh_header()
        self.refresh_chrome()
        if self.POLL is not None:
            self.set_interval(self.appliance.poll_interval * self.POLL, self.tick)
            self.tick()

    def on_screen_resume(self) -> None:
        self.refresh_header()
        self.refresh_chrome()
        if self.POLL is not None:
            self.tick()

    def on_resize(self) -> None:
        self.refresh_header()
        self.refresh_chrome()

    def refresh_header(self) -> None:
        app = self.appliance
        self.query_one(StatusHeader).show(app.status, app.status_error, app.source.url)

    def title_text(self) -> Text:
        return Text(self.NAME, "bold")

    def refresh_chrome(self) -> None:
        title = self.title_text()
        if self.filter_text:
            title.append(f"  /{self.filter_text}", "yellow")
        if self.error:
            title.append(f"  {self.error}", "bold red")
        title.no_wrap, title.overflow = True, "ellipsis"
        self.query_one("#title", Static).update(title)
        hints = [("?", "help"), (":", "view"), ("/", "filter"), *self.HINTS]
        self.query_one("#hints", Static).update(Text(fit_hints(hints, max(self.app.size.width - 2, 20)),
                                                     "dim", no_wrap=True))

    # -- polling --------------------------------------------------------------------------------

    def tick(self) -> None:
        if self.is_current and not self._polling:
            self._polling = True
            self.poll()

    @work(thread=True, group="poll")
    def poll(self) -> None:
        started = time.monotonic()
        try:
            data, error = self.fetch(self.source), None
        except ApiError as exc:
            data, error = None, exc.message
        except Exception as exc:  # a view must survive whatever a poll meets
            data, error = None, f"{type(exc).__name__}: {exc}"
        self.post_message(self.Fetched(data, error, time.monotonic() - started))

    def on_view_fetched(self, message: Fetched) -> None:
        self._polling = False
        self.polls += 1
        if message.error != self.error:
            self.error = message.error
            self.refresh_chrome()
        if message.data is not None:
            self.show(message.data)

    def fetch(self, source: DataSource) -> Any:
        return None

    def show(self, data: Any) -> None:
        pass

    # -- what the app's keys act on -----------------------------------------------------------

    def set_filter(self, text: str) -> None:
        self.filter_text = text
        self.refresh_chrome()

    def selected(self) -> Selection | None:
        return None

    def drill(self) -> None:
        """`enter`."""

    def logs_of(self, sel: Selection) -> None:
        """`l`: the logs of what is selected."""
        from tui.logs import LogsView

        if sel.kind == "deployment" and sel.endpoint:
            self.app.push_screen(LogsView(sel.endpoint, sel.name))
        elif sel.kind == "endpoint":
            from tui.requests import RequestsView

            self.app.push_screen(RequestsView(sel.name))
        elif sel.kind == "job":
            from tui.jobs import JobLogsView

            self.app.push_screen(JobLogsView(sel.name))
        else:
            self.app.notify(f"no logs for a {sel.kind}", severity="warning")


def error_text(message: str) -> Text:
    return Text(message, "bold red")
