"""Models, environments and events: versions, sizes and build state where the API knows them."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult

from tui.source import DataSource
from tui.table import Col, LiveTable
from tui.view import Selection, View


class TableView(View):
    KIND: ClassVar[str] = ""
    COLUMNS: ClassVar[list[Col]] = []
    HINTS: ClassVar[list[tuple[str, str]]] = [("d", "describe"), ("y", "yaml"), ("a", "apply"), ("esc", "back")]

    def __init__(self) -> None:
        super().__init__()
        self.items: dict[str, Selection] = {}

    def body(self) -> ComposeResult:
        yield LiveTable(self.COLUMNS, id="table")

    def title_text(self) -> Text:
        return Text.assemble((self.NAME, "bold"), f" ({len(self.items)})")

    def cells(self, item: dict[str, Any]) -> tuple[str, list[Any]]:
        raise NotImplementedError

    def show(self, data: Any) -> None:
        rows: list[tuple[str, list[Any], int]] = []
        items: dict[str, Selection] = {}
        for item in data:
            key, cells = self.cells(item)
            items[key] = Selection(self.KIND, key, data=item)
            rows.append((key, cells, 1))
        self.items = items
        self.query_one(LiveTable).set_rows(rows)
        self.refresh_chrome()

    def set_filter(self, text: str) -> None:
        super().set_filter(text)
        self.query_one(LiveTable).set_filter(text)

    def selected(self) -> Selection | None:
        key = self.query_one(LiveTable).selected_key
        return self.items.get(key) if key else None


class ModelsView(TableView):
    NAME = "models"
    KIND = "model"
    COLUMNS: ClassVar[list[Col]] = [
        Col("name", "NAME", 18), Col("version", "VER", 4), Col("type", "TYPE", 14, 4),
        Col("framework", "FRAMEWORK", 10, 3),
        Col("signature", "SIGNATURE", 24, 5), Col("digest", "DIGEST", 14, 2), Col("archived", "ARCHIVED", 8, 6),
        Col("created", "CREATED", 20, 1)]

    def fetch(self, source: DataSource) -> Any:
        return source.list_models()

    def cells(self, m: dict[str, Any]) -> tuple[str, list[Any]]:
        sig = m.get("signature") or {}
        inputs = ", ".join(f"{i.get('name')}{i.get('shape')}" for i in sig.get("inputs") or [])
        return f"{m['name']}:{m['version']}", [
            m["name"], str(m["version"]), m.get("type", ""), m.get("framework", ""), inputs or "-",
            str(m.get("digest", ""))[:12], "yes" if m.get("archived") else "", str(m.get("created_at", ""))[:19]]


class EnvironmentsView(TableView):
    NAME = "environments"
    KIND = "environment"
    COLUMNS: ClassVar[list[Col]] = [
        Col("name", "NAME", 20), Col("version", "VER", 4), Col("image", "IMAGE / BUILD", 34),
        Col("conda", "CONDA", 8, 3), Col("digest", "DIGEST", 14, 2), Col("created", "CREATED", 20, 1)]

    def fetch(self, source: DataSource) -> Any:
        return source.list_environments()

    def cells(self, e: dict[str, Any]) -> tuple[str, list[Any]]:
        spec = e.get("spec") or {}
        build = spec.get("build") or {}
        image = spec.get("image") or (f"build: {build.get('path', '')}" if build else "-")
        return f"{e['name']}:{e['version']}", [
            e["name"], str(e["version"]), str(image), "yes" if spec.get("conda_file") else "",
            str(e.get("digest", ""))[:12], str(e.get("created_at", ""))[:19]]


class EventsView(TableView):
    NAME = "events"
    KIND = "event"
    HINTS: ClassVar[list[tuple[str, str]]] = [("d", "describe"), ("y", "yaml"), ("esc", "back")]
    COLUMNS: ClassVar[list[Col]] = [
        Col("at", "AT", 19, 3), Col("kind", "KIND", 22), Col("subject", "SUBJECT", 20), Col("detail", "DETAIL", 60, 1)]

    def fetch(self, source: DataSource) -> Any:
        return source.events(limit=200)

    def cells(self, e: dict[str, Any]) -> tuple[str, list[Any]]:
        detail = json.dumps(e.get("detail") or {}, separators=(",", ":"))
        return str(e.get("id")), [str(e.get("at", ""))[:19].replace("T", " "), e.get("kind", ""),
                                  e.get("subject", ""), detail]
