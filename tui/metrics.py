"""Metrics: per deployment, sparklines of req/s and p99 over the last minutes (history kept client-side:
the API answers windows), and the mirror report of an endpoint with a mirror."""

from __future__ import annotations

import contextlib
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Label, Sparkline, Static

from tui.format import ms, percent, rate
from tui.source import DataSource
from tui.view import Selection, View

WINDOW = 5  # s: each sample is the last 5 seconds' rate and p99


def mirror_text(report: dict[str, Any]) -> Text:
    return Text.assemble(
        ("mirror ", "bold"), f"{', '.join(report.get('mirror_deployments') or []) or '-'}: ",
        f"{report.get('mirrored', 0):,} mirrored, {report.get('pairs', 0):,} paired, agreement ",
        (percent(report.get("agreement_rate")), "green"),
        f", errors live {report.get('live_errors', 0)} / mirror {report.get('mirror_errors', 0)}, "
        f"p50 {ms(report.get('live_p50_ms'))} vs {ms(report.get('mirror_p50_ms'))}, "
        f"p95 {ms(report.get('live_p95_ms'))} vs {ms(report.get('mirror_p95_ms'))}")


class MetricsView(View):
    NAME = "metrics"
    HINTS: ClassVar[list[tuple[str, str]]] = [("esc", "back")]

    def __init__(self, endpoint: str | None = None) -> None:
        super().__init__()
        self.endpoint = endpoint
        self.shape: tuple[tuple[str, tuple[str, ...], bool], ...] = ()

    def body(self) -> ComposeResult:
        yield VerticalScroll(id="charts")

    def title_text(self) -> Text:
        return Text.assemble((self.NAME, "bold"), f" · {self.endpoint or 'all endpoints'}",
                             (f"  (req/s and p99, {WINDOW}s windows, one a second)", "dim"))

    def fetch(self, source: DataSource) -> Any:
        endpoints = [self.endpoint] if self.endpoint else [e["name"] for e in source.list_endpoints()]
        out = []
        for ep in endpoints:
            detail = source.get_endpoint(ep) if self.endpoint else None
            rows = source.metrics(ep, since=WINDOW)
            mirror = None
            if detail is not None and detail.get("mirror_traffic"):
                mirror = source.mirror_report(ep)
            elif detail is None:
                mirror = None
            out.append((ep, rows, mirror))
        return out

    def show(self, data: Any) -> None:
        history = self.appliance.history
        for ep, rows, _ in data:
            history.add(ep, rows)
        shape = tuple((ep, tuple(history.of(ep)), mirror is not None) for ep, _, mirror in data)
        charts = self.query_one("#charts", VerticalScroll)
        if shape != self.shape:  # deployments came or went: rebuild the widgets; otherwise update them
            self.shape = shape
            charts.remove_children()
            widgets: list[Any] = []
            for ep, deps, has_mirror in shape:
                widgets.append(Label(Text(ep, "bold underline"), classes="endpoint"))
                for dep in deps:
                    safe = f"{ep}--{dep or 'unrouted'}".replace(".", "-")
                    widgets += [Label(id=f"l-rps-{safe}", classes="metric"),
                                Sparkline([], id=f"s-rps-{safe}", classes="rps"),
                                Label(id=f"l-p99-{safe}", classes="metric"),
                                Sparkline([], id=f"s-p99-{safe}", classes="p99")]
                if has_mirror:
                    widgets.append(Static(id=f"mirror-{ep}", classes="mirror"))
            if not widgets:
                widgets.append(Label("no endpoints yet", classes="metric"))
            charts.mount_all(widgets)
            self.call_after_refresh(self._fill, data)
        else:
            self._fill(data)

    def _fill(self, data: Any) -> None:
        history = self.appliance.history
        for ep, _, mirror in data:
            for dep, points in history.of(ep).items():
                safe = f"{ep}--{dep or 'unrouted'}".replace(".", "-")
                rps = [p[1] for p in points]
                p99 = [p[2] for p in points]
                name = dep or "(not routed)"
                try:
                    self.query_one(f"#l-rps-{safe}", Label).update(
                        f"{name}  req/s {rate(rps[-1] if rps else None)}  (max {rate(max(rps, default=0))})")
                    self.query_one(f"#s-rps-{safe}", Sparkline).data = rps
                    self.query_one(f"#l-p99-{safe}", Label).update(
                        f"{name}  p99 {ms(p99[-1] if p99 else None)}  (max {ms(max(p99, default=0))})")
                    self.query_one(f"#s-p99-{safe}", Sparkline).data = p99
                except Exception:  # widgets not mounted yet: the next poll fills them
                    pass
            if mirror is not None:
                with contextlib.suppress(Exception):
                    self.query_one(f"#mirror-{ep}", Static).update(mirror_text(mirror))

    def selected(self) -> Selection | None:
        return Selection("endpoint", self.endpoint) if self.endpoint else None
