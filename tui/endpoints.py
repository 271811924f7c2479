"""Endpoints: online (traffic as bars, mirror, req/s, p50/p99, errors, state, scheduled monitors' failing
signals) and batch (jobs, progress)."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType

from tui.format import bar, eta, ms, percent, rate
from tui.source import DataSource
from tui.table import Col, LiveTable
from tui.view import Selection, View

STATE_STYLE = {"Succeeded": "green", "Failed": "bold red", "Creating": "yellow", "Updating": "yellow",
               "Deleting": "yellow", "Running": "cyan", "Completed": "green", "Canceled": "dim",
               "Queued": "yellow", "NotStarted": "yellow"}


def state_text(state: str | None) -> Text:
    return Text(state or "-", STATE_STYLE.get(state or "", ""))


def traffic_lines(traffic: dict[str, int], width: int = 9) -> Text:
    if not traffic:
        return Text("-", "dim")
    out = Text()
    for i, (name, value) in enumerate(sorted(traffic.items(), key=lambda kv: -kv[1])):
        if i:
            out.append("\n")
        out.append(f"{name:<8.8} ")
        out.append(bar(value / 100, width), "green" if value else "dim")
        out.append(f" {value:>3}")
    return out


def summarize(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    """One endpoint's metrics rows (one per deployment) as one: req/s summed, p50/p99 the worst, errors
    weighted by requests; mirrored copies left out."""
    live = [r for r in rows if not r.get("mirrored_only")]
    total = sum(int(r.get("requests") or 0) for r in live)
    if not total:
        return {"rps": 0.0, "p50": None, "p99": None, "err": None}
    return {"rps": sum(float(r.get("requests_per_second") or 0) for r in live),
            "p50": max((r["p50_ms"] for r in live if r.get("p50_ms") is not None), default=None),
            "p99": max((r["p99_ms"] for r in live if r.get("p99_ms") is not None), default=None),
            "err": sum(float(r.get("error_rate") or 0) * int(r.get("requests") or 0) for r in live) / total}


RATE_WINDOW = 10  # seconds of requests behind REQ/S, P50, P99 and ERR


def monitor_cell(monitors: list[dict[str, Any]]) -> Text:
    """An endpoint's scheduled monitors at a glance: how many signals failed in their last runs."""
    if not monitors:
        return Text("-", "dim")
    runs = [(m.get("last_run") or {}).get("signals") or {} for m in monitors]
    failed = sum(1 for signals in runs for s in signals.values() if s.get("status") in ("failed", "error"))
    if failed:
        return Text(f"✗ {failed}", "bold red")
    if not any(runs):
        return Text("not run", "dim")
    return Text("ok", "green")


class EndpointsView(View):
    NAME = "endpoints"
    HINTS: ClassVar[list[tuple[str, str]]] = [
        ("enter", "deployments"), ("d", "describe"), ("y", "yaml"), ("l", "requests"), ("t", "traffic"),
        ("i", "invoke"), ("u", "curl"), ("k", "regen key"), ("a", "apply"), ("ctrl-d", "delete")]
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("t", "app.traffic", "traffic"), Binding("i", "app.invoke", "invoke"),
        Binding("u", "app.curl", "curl"), Binding("k", "app.regenerate", "regenerate key")]
    COLUMNS: ClassVar[list[Col]] = [
        Col("name", "NAME", 14), Col("auth", "AUTH", 5, 5), Col("traffic", "TRAFFIC", 22),
        Col("mirror", "MIRROR", 12, 8), Col("rps", "REQ/S", 8, 3, True), Col("p50", "P50", 8, 7, True),
        Col("p99", "P99", 8, 4, True), Col("err", "ERR", 6, 6, True), Col("state", "STATE", 10, 2),
        Col("monitor", "MONITOR", 8, 4), Col("url", "URL", 46, 9)]

    def __init__(self) -> None:
        super().__init__()
        self.items: dict[str, Selection] = {}

    def body(self) -> ComposeResult:
        yield LiveTable(self.COLUMNS, id="table")

    def title_text(self) -> Text:
        return Text.assemble((self.NAME, "bold"), f" ({len(self.items)})")

    def fetch(self, source: DataSource) -> Any:
        online = source.list_endpoints()
        batch = source.list_batch_endpoints()
        # The last 10 s: live, and a tenth of the rows a minute's window makes the daemon scan each second.
        metrics = {ep["name"]: source.metrics(ep["name"], since=RATE_WINDOW) for ep in online}
        jobs = source.list_jobs() if batch else []
        monitors: dict[str, list[dict[str, Any]]] = {}
        for m in source.list_monitors() if online else []:
            monitors.setdefault(m["endpoint_name"], []).append(m)
        return online, batch, metrics, jobs, monitors

    def show(self, data: Any) -> None:
        online, batch, metrics, jobs, monitors = data
        rows: list[tuple[str, list[Any], int]] = []
        items: dict[str, Selection] = {}
        for ep in online:
            m = summarize(metrics.get(ep["name"], []))
            traffic = ep.get("traffic") or {}
            mirror = ep.get("mirror_traffic") or {}
            key = f"online/{ep['name']}"
            items[key] = Selection("endpoint", ep["name"], data=ep)
            rows.append((key, [
                ep["name"], ep.get("auth_mode", ""), traffic_lines(traffic),
                " ".join(f"{k} {v}%" for k, v in mirror.items()) or "-",
                rate(m["rps"]), ms(m["p50"]), ms(m["p99"]), percent(m["err"]),
                state_text(ep.get("provisioning_state")), monitor_cell(monitors.get(ep["name"], [])),
                ep.get("scoring_uri", "")], max(1, len(traffic))))
        for ep in batch:
            mine = [j for j in jobs if j.get("endpoint_name") == ep["name"]]
            running = [j for j in mine if j.get("status") in ("Running", "Queued", "NotStarted")]
            key = f"batch/{ep['name']}"
            items[key] = Selection("batch-endpoint", ep["name"], data=ep)
            if running:
                p = running[0].get("progress") or {}
                done = p.get("mini_batches_done", 0) + p.get("mini_batches_failed", 0)
                total = p.get("mini_batches") or 1
                jobs_cell = Text.assemble(f"{len(running)} running ", (bar(done / total, 8), "cyan"),
                                          f" {done * 100 // total:>2}%")
                speed = rate(p.get("items_per_second"))
                state = Text(f"ETA {eta(p.get('eta_seconds'))}", "cyan")
            else:
                jobs_cell = Text(f"jobs: {len(mine)}", "dim")
                speed, state = "-", state_text(ep.get("provisioning_state"))
            rows.append((key, [ep["name"], Text("batch", "magenta"), jobs_cell, "-", speed, "-", "-", "-", state, "-",
                               ep.get("scoring_uri", "")], 1))
        self.items = items
        table = self.query_one(LiveTable)
        table.set_rows(rows)
        self.refresh_chrome()

    def set_filter(self, text: str) -> None:
        super().set_filter(text)
        self.query_one(LiveTable).set_filter(text)

    def selected(self) -> Selection | None:
        key = self.query_one(LiveTable).selected_key
        return self.items.get(key) if key else None

    def drill(self) -> None:
        from tui.deployments import DeploymentsView

        sel = self.selected()
        if sel:
            self.app.push_screen(DeploymentsView(sel.name, batch=sel.kind == "batch-endpoint"))
