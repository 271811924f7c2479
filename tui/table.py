"""A DataTable that refreshes in place (cursor and scroll stay), drops columns from the right in a fixed
order when the terminal is narrow (a row never wraps), and filters and highlights (`/`)."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import events
from textual.widgets import DataTable

from tui.format import fit_columns

Cell = str | Text


@dataclass(frozen=True)
class Col:
    key: str
    label: str
    width: int
    drop: int = 0  # 0: never dropped; otherwise the highest goes first on a narrow terminal
    right: bool = False


class LiveTable(DataTable[Cell]):
    DEFAULT_CSS = "LiveTable { height: 1fr; }"

    def __init__(self, columns: list[Col], **kwargs: object) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)  # type: ignore[arg-type]
        self.all_columns = columns
        self.shown: list[Col] = []
        self.rows_data: list[tuple[str, list[Cell], int]] = []
        self.filter_text = ""
        self._signature: tuple[object, ...] = ()

    # -- columns --------------------------------------------------------------------------------

    def on_resize(self, event: events.Resize) -> None:
        self._fit(event.size.width)

    def on_mount(self) -> None:
        self._fit(self.size.width or self.app.size.width)

    def _fit(self, width: int) -> None:
        keys = fit_columns([(c.key, c.width, c.drop) for c in self.all_columns], max(width - 2, 10))
        shown = [c for c in self.all_columns if c.key in keys]
        if shown != self.shown:
            self.shown = shown
            self.clear(columns=True)
            for c in shown:
                self.add_column(Text(c.label, justify="right" if c.right else "left"), key=c.key, width=c.width)
            self._signature = ()
            self._render_rows()

    # -- rows -----------------------------------------------------------------------------------

    def set_rows(self, rows: list[tuple[str, list[Cell], int]]) -> None:
        """rows: (key, one cell per column of `all_columns`, height)."""
        self.rows_data = rows
        self._render_rows()

    def set_filter(self, text: str) -> None:
        self.filter_text = text
        self._signature = ()
        self._render_rows()

    @property
    def selected_key(self) -> str | None:
        if not self.row_count:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        except Exception:
            return None
        return None if key.value is None else str(key.value)

    def _cells(self, cells: list[Cell]) -> list[Cell]:
        index = {c.key: i for i, c in enumerate(self.all_columns)}
        out: list[Cell] = []
        for c in self.shown:
            value = cells[index[c.key]]
            text = value.copy() if isinstance(value, Text) else Text(str(value), no_wrap=True)
            text.no_wrap = True
            text.overflow = "ellipsis"
            if c.right:
                text.justify = "right"
            if self.filter_text:
                text.highlight_words([self.filter_text], "reverse bold", case_sensitive=False)
            out.append(text)
        return out

    def _visible(self) -> list[tuple[str, list[Cell], int]]:
        if not self.filter_text:
            return self.rows_data
        needle = self.filter_text.lower()
        return [r for r in self.rows_data
                if any(needle in (c.plain if isinstance(c, Text) else str(c)).lower() for c in r[1])]

    def _render_rows(self) -> None:
        if not self.shown:
            return
        rows = self._visible()
        shape = (tuple((k, h) for k, _, h in rows), tuple(c.key for c in self.shown))
        if shape == self._signature:  # same rows, same order: update the cells that changed, nothing moves
            for key, cells, _ in rows:
                for col, value in zip(self.shown, self._cells(cells), strict=True):
                    if self.get_cell(key, col.key) != value:
                        self.update_cell(key, col.key, value)
            return
        selected, scroll_x, scroll_y = self.selected_key, self.scroll_x, self.scroll_y
        row_index = self.cursor_row
        self.clear()
        for key, cells, height in rows:
            self.add_row(*self._cells(cells), key=key, height=max(1, height))
        self._signature = shape
        keys = [k for k, _, _ in rows]
        if rows:
            target = keys.index(selected) if selected in keys else min(row_index, len(rows) - 1)
            self.move_cursor(row=target, animate=False, scroll=False)
        self.scroll_to(scroll_x, scroll_y, animate=False, immediate=True)
