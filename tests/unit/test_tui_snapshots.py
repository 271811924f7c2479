"""One SVG snapshot per view of the terminal UI, fed by the in-memory fake source (fixed data, UTC clock,
polling once), at 100x30 and at 80x24 (columns dropped from the right, never wrapped).
Update the baselines with `pytest tests/unit/test_tui_snapshots.py --snapshot-update`."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from textual.pilot import Pilot
from tui_fake import T0, FakeSource

from tui.actions import ActionForm
from tui.app import ApplianceApp
from tui.source import History
from tui.view import View


@pytest.fixture(autouse=True)
def utc() -> Iterator[None]:
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if old is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = old
    time.tzset()


def history() -> History:
    h = History()
    for i in range(60):
        wave = (i % 20) / 20
        h.add("my-ep", [{"deployment": "blue", "requests_per_second": 300 + 200 * wave, "p99_ms": 3 + 2 * wave},
                        {"deployment": "green", "requests_per_second": 40 + 10 * wave, "p99_ms": 4 + wave}],
              at=T0 + i)
    return h


def app(start: str) -> ApplianceApp:
    return ApplianceApp(FakeSource(), poll_interval=3600, history=history(), start=start)


async def settle(pilot: Pilot[Any]) -> None:
    app = pilot.app
    assert isinstance(app, ApplianceApp)
    for _ in range(200):
        view = app.screen
        ready = app.status is not None and isinstance(view, View) and (view.polls >= 1 or view.POLL is None)
        if view.__class__.__name__ == "RequestsView":
            ready = ready and len(view.query_one("#tail").buffer) > 0  # type: ignore[attr-defined]
        if ready:
            break
        await pilot.pause(0.02)
    await pilot.pause(0.1)


VIEWS = ["endpoints", "deployments", "requests", "metrics", "jobs", "models", "environments", "events"]


@pytest.mark.parametrize("view", VIEWS)
def test_view(snap_compare: Any, view: str) -> None:
    assert snap_compare(app(view), terminal_size=(100, 30), run_before=settle)


@pytest.mark.parametrize("view", ["endpoints", "deployments", "jobs"])
def test_view_narrow(snap_compare: Any, view: str) -> None:
    assert snap_compare(app(view), terminal_size=(80, 24), run_before=settle)


def test_logs_view(snap_compare: Any) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        assert isinstance(pilot.app, ApplianceApp)
        pilot.app.switch_to("logs", "my-ep/blue")
        await settle(pilot)

    assert snap_compare(app("endpoints"), terminal_size=(100, 30), run_before=before)


def test_help(snap_compare: Any) -> None:
    assert snap_compare(app("endpoints"), terminal_size=(100, 30), press=["question_mark"], run_before=settle)


def test_filter_highlights(snap_compare: Any) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.press("slash", *"status=5xx", "enter")
        await pilot.pause(0.1)

    assert snap_compare(app("requests"), terminal_size=(100, 30), run_before=before)


def test_traffic_refusal(snap_compare: Any) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.press("t", "ctrl+u", *"blue=90 green=20", "enter")
        for _ in range(250):  # the daemon's refusal comes back on a worker thread: waited for, 5 s at most
            form = pilot.app.screen
            if isinstance(form, ActionForm) and form.error_message.startswith("refused"):
                break
            await pilot.pause(0.02)
        await pilot.pause(0.05)

    assert snap_compare(app("endpoints"), terminal_size=(100, 30), run_before=before)


def test_describe_endpoint_with_monitors(snap_compare: Any) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.press("d")
        for _ in range(200):  # the describe pane comes from a worker
            if pilot.app.screen.__class__.__name__ == "TextPane":
                break
            await pilot.pause(0.02)
        await pilot.pause(0.1)

    assert snap_compare(app("endpoints"), terminal_size=(100, 30), run_before=before)
