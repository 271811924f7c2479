"""Deployments of an endpoint (or of all): model, environment, runtime and provider, instances, state."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType

from tui.endpoints import state_text
from tui.source import DataSource
from tui.table import Col, LiveTable
from tui.view import Selection, View


def short_ref(ref: Any) -> str:
    if isinstance(ref, dict):
        return f"{ref.get('name', 'inline')}:{ref.get('version', '?')}"
    return str(ref or "-").removeprefix("azureml:")


class DeploymentsView(View):
    NAME = "deployments"
    HINTS: ClassVar[list[tuple[str, str]]] = [
        ("enter", "logs"), ("d", "describe"), ("y", "yaml"), ("s", "scale"), ("t", "traffic"), ("i", "invoke"),
        ("ctrl-d", "delete"), ("esc", "back")]
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "app.scale", "scale"), Binding("t", "app.traffic", "traffic"),
        Binding("i", "app.invoke", "invoke")]
    COLUMNS: ClassVar[list[Col]] = [
        Col("name", "NAME", 12), Col("endpoint", "ENDPOINT", 12, 6), Col("model", "MODEL", 14),
        Col("env", "ENVIRONMENT", 14, 7), Col("runtime", "RUNTIME", 9, 4), Col("provider", "PROVIDER", 12, 8),
        Col("ready", "READY", 5, 0, True), Col("traffic", "TRAFFIC", 7, 3, True), Col("state", "STATE", 10),
        Col("reason", "REASON", 40, 5)]

    def __init__(self, endpoint: str | None = None, batch: bool = False) -> None:
        super().__init__()
        self.endpoint, self.is_batch = endpoint, batch
        self.items: dict[str, Selection] = {}

    def body(self) -> ComposeResult:
        yield LiveTable(self.COLUMNS, id="table")

    def title_text(self) -> Text:
        where = f" · {self.endpoint}" if self.endpoint else " · all endpoints"
        return Text.assemble((self.NAME, "bold"), where, f" ({len(self.items)})")

    def fetch(self, source: DataSource) -> Any:
        if self.endpoint:
            lister = source.list_batch_deployments if self.is_batch else source.list_deployments
            return [(self.endpoint, self.is_batch, d) for d in lister(self.endpoint)]
        out = []
        for ep in source.list_endpoints():
            out += [(ep["name"], False, d) for d in source.list_deployments(ep["name"])]
        return out

    def show(self, data: Any) -> None:
        rows: list[tuple[str, list[Any], int]] = []
        items: dict[str, Selection] = {}
        for endpoint, batch, d in data:
            instances = d.get("instances") or []
            ready = sum(1 for i in instances if i.get("state") == "ready")
            total = d.get("instance_count") or (d.get("resources") or {}).get("instance_count") or len(instances)
            reason = d.get("error") or next((i.get("error") for i in instances if i.get("error")), None) or ""
            key = f"{endpoint}/{d['name']}"
            items[key] = Selection("batch-deployment" if batch else "deployment", d["name"], endpoint, d)
            rows.append((key, [
                d["name"], endpoint, short_ref(d.get("model")), short_ref(d.get("environment")),
                d.get("runtime") or ("batch" if batch else "-"), (d.get("provider") or "-").replace(
                    "ExecutionProvider", ""),
                Text(f"{ready}/{total}", "green" if instances and ready == total else "yellow"),
                "-" if batch else f"{d.get('traffic', 0)}%", state_text(d.get("provisioning_state")),
                Text(reason.splitlines()[0] if reason else "", "red")], 1))
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
        if sel and sel.kind == "deployment":
            self.logs_of(sel)
        elif sel:
            self.app.notify("batch deployments log per job: see :jobs", severity="information")
