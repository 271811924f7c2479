"""The request log, live: a long poll on `live_requests` in a thread, one `Log` update per batch."""

from __future__ import annotations

import time
from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.worker import get_current_worker

from tui.format import RequestFilter, parse_request_filter, request_line
from tui.source import ApiError
from tui.tail import TailLog
from tui.view import Selection, View

MIN_INTERVAL = 0.25  # s between polls: at most 4 `Log` updates a second, however fast requests come


class RequestsView(View):
    NAME = "requests"
    POLL = None  # its own long-poll loop
    HINTS: ClassVar[list[tuple[str, str]]] = [("space", "pause"), ("end", "follow"), ("c", "clear"),
                                              ("/", "deployment=X status>=500 latency>10"), ("esc", "back")]
    BINDINGS: ClassVar[list[BindingType]] = [Binding("space", "pause", "pause/resume"),
                                             Binding("c", "clear", "clear")]

    class Batch(Message):
        def __init__(self, rows: list[dict[str, Any]], lines: list[str], missed: int, logging: bool) -> None:
            super().__init__()
            self.rows, self.lines, self.missed, self.logging = rows, lines, missed, logging

    def __init__(self, endpoint: str | None = None, cap: int = 10_000) -> None:
        super().__init__()
        self.endpoint, self.cap = endpoint, cap
        self.missed = 0
        self.received = 0
        self.newest_at: float | None = None  # the newest row's time (the request's, on the daemon's clock)
        self.logging = True
        self.rate = 0.0
        self._window: list[tuple[float, int]] = []
        self.filter = RequestFilter()

    def body(self) -> ComposeResult:
        yield TailLog(self.cap, id="tail")

    @property
    def log_widget(self) -> TailLog:
        return self.query_one(TailLog)

    def on_mount(self) -> None:
        super().on_mount()
        self.tail()

    @property
    def dropped(self) -> int:
        return self.missed + self.log_widget.dropped

    def title_text(self) -> Text:
        state = "paused" if self.log_widget.paused else "live"
        out = Text.assemble((self.NAME, "bold"), f" · {self.endpoint or 'all endpoints'} ",
                            (f"({state}, {self.rate:,.0f}/s, {self.dropped:,} dropped, "
                             f"{len(self.log_widget.buffer):,}/{self.cap:,} kept)",
                             "yellow" if self.log_widget.paused else ""))
        if not self.logging:
            out.append("  the request log is off (appliance request-log on)", "bold red")
        return out

    @work(thread=True, group="tail")
    def tail(self) -> None:
        worker = get_current_worker()
        after: int | None = None
        while not worker.is_cancelled:
            if not self.is_current:
                after = None  # hidden: no polling; back on screen, the tail starts from now
                time.sleep(MIN_INTERVAL)
                continue
            started = time.monotonic()
            try:
                answer = self.source.live_requests(after, self.endpoint, wait=1.0)
            except ApiError as exc:
                self.post_message(self.Fetched(None, exc.message, 0.0))
                time.sleep(1.0)
                continue
            except Exception as exc:
                self.post_message(self.Fetched(None, f"{type(exc).__name__}: {exc}", 0.0))
                time.sleep(1.0)
                continue
            after = answer.get("next", after)
            rows = answer.get("rows") or []
            if rows or answer.get("missed") or not answer.get("logging", True) or self.error:
                self.post_message(self.Batch(rows, [request_line(r) for r in rows], int(answer.get("missed") or 0),
                                             bool(answer.get("logging", True))))
            rest = MIN_INTERVAL - (time.monotonic() - started)
            if rest > 0:
                time.sleep(rest)

    def on_requests_view_batch(self, message: Batch) -> None:
        if self.error:
            self.error = None
        now = time.monotonic()
        self.received += len(message.rows)
        self.missed += message.missed
        self.logging = message.logging
        self._window = [(t, n) for t, n in self._window if now - t < 2.0] + [(now, len(message.rows))]
        span = max(now - self._window[0][0], 1.0)
        self.rate = sum(n for _, n in self._window) / span
        if message.rows:
            self.newest_at = float(message.rows[-1].get("at") or 0)
        self.log_widget.write_batch(zip(message.rows, message.lines, strict=True))
        self.refresh_chrome()

    def action_pause(self) -> None:
        self.log_widget.toggle_pause()
        self.refresh_chrome()

    def action_clear(self) -> None:
        self.log_widget.buffer.clear()
        self.log_widget.clear()
        self.refresh_chrome()

    def set_filter(self, text: str) -> None:
        super().set_filter(text)
        self.filter = parse_request_filter(text)
        f = self.filter
        self.log_widget.set_match(None if f.empty else f.matches, f.words + ([f.deployment] if f.deployment else []))
        self.refresh_chrome()

    def selected(self) -> Selection | None:
        return Selection("endpoint", self.endpoint) if self.endpoint else None
