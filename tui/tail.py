"""A bounded, filterable, highlightable log pane: Textual's `Log` (one update per batch, no per-line
widgets) over a capped buffer that counts what it drops. Autoscroll stops when the user scrolls up."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from rich.highlighter import Highlighter
from rich.text import Text
from textual.widgets import Log


class MatchHighlighter(Highlighter):
    def __init__(self) -> None:
        self.words: list[str] = []

    def highlight(self, text: Text) -> None:
        if self.words:
            text.highlight_words(self.words, "reverse bold", case_sensitive=False)
        status = text.plain[:60]
        for code, style in ((" 5", "red"), (" 4", "yellow")):  # cheap status colouring for request lines
            at = status.find(code)
            if at > 0 and status[at + 1:at + 4].isdigit() and status[at + 4:at + 5] == " ":
                text.stylize(style, at + 1, at + 4)
                break


class TailLog(Log):
    """`write_batch` once per poll; the buffer (`cap` entries) is the memory bound, the `Log` shows the
    entries that match the filter."""

    DEFAULT_CSS = "TailLog { height: 1fr; }"

    def __init__(self, cap: int = 10_000, **kwargs: Any) -> None:
        super().__init__(max_lines=cap, highlight=True, auto_scroll=True, **kwargs)
        self.cap = cap
        self.buffer: deque[tuple[Any, str]] = deque(maxlen=cap)
        self.dropped = 0  # entries that fell out of the buffer
        self.paused = False
        self.match: Callable[[Any, str], bool] | None = None
        self.highlighter = MatchHighlighter()

    @property
    def following(self) -> bool:
        return self.max_scroll_y == 0 or self.scroll_y >= self.max_scroll_y - 1

    def write_batch(self, entries: Iterable[tuple[Any, str]]) -> None:
        entries = list(entries)
        overflow = len(self.buffer) + len(entries) - self.cap
        if overflow > 0:
            self.dropped += overflow
        self.buffer.extend(entries)
        if self.paused:
            return
        match = self.match
        lines = [line for item, line in entries if match is None or match(item, line)]
        if lines:
            self.write_lines(lines[-self.cap:], scroll_end=self.following)

    def set_match(self, match: Callable[[Any, str], bool] | None, words: list[str]) -> None:
        self.match = match
        assert isinstance(self.highlighter, MatchHighlighter)
        self.highlighter.words = words
        self.rebuild()

    def rebuild(self) -> None:
        match = self.match
        self.clear()
        self.write_lines([line for item, line in self.buffer if match is None or match(item, line)],
                         scroll_end=True)

    def toggle_pause(self) -> bool:
        self.paused = not self.paused
        if not self.paused:
            self.rebuild()
        return self.paused
