"""The terminal UI against a real daemon with real deployments (Pilot: `App.run_test()`): every view
shows live data, traffic set in the UI is what the CLI then reports, a refusal shows the daemon's
message and changes nothing, the request tail shows a curl request within a second, and keeps up with
thousands of requests a second (wrk) with a bounded buffer and a visible dropped count."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Daemon

from appliance.client import Client
from tui.actions import ActionForm
from tui.app import ApplianceApp
from tui.requests import RequestsView
from tui.table import LiveTable
from tui.view import View

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


SAMPLE = b'{"data": [[5.1, 3.5, 1.4, 0.2], [6.2, 3.4, 5.4, 2.3]]}'


@pytest.fixture
def blue_green(daemon: Daemon, iris_project: Path) -> Iterator[Daemon]:
    (iris_project / "green.yml").write_text((iris_project / "blue.yml").read_text().replace("name: blue",
                                                                                           "name: green"))
    daemon.cli("apply", "-f", "endpoint.yml", "-f", "blue.yml", "-f", "green.yml", cwd=iris_project)
    yield daemon


def tui(daemon: Daemon) -> ApplianceApp:
    return ApplianceApp(Client(url=daemon.url, home=daemon.home, timeout=30))


async def until(pilot: Any, condition: Callable[[], Any], timeout: float = 10.0, what: str = "it") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        await pilot.pause(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def table_text(app: ApplianceApp) -> str:
    table = app.screen.query_one(LiveTable)
    return "\n".join(" ".join(str(getattr(c, "plain", c)) for c in table.get_row_at(i)) for i in range(table.row_count))


async def test_every_view_renders_live_data(blue_green: Daemon) -> None:
    daemon = blue_green
    daemon.score("my-ep", json.loads(SAMPLE), **{"azureml-model-deployment": "blue"})
    app = tui(daemon)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.status and "my-ep" in table_text(app), what="the endpoints view")
        assert app.status and app.status["url"].endswith(str(daemon.port))
        assert "Succeeded" in table_text(app) and "key" in table_text(app)
        await pilot.press("enter")  # endpoint → its deployments
        await until(pilot, lambda: type(app.screen).__name__ == "DeploymentsView" and "green" in table_text(app),
                    what="the deployments view")
        assert "blue" in table_text(app) and "iris:1" in table_text(app) and "1/1" in table_text(app)
        await pilot.press("enter")  # deployment → its logs
        await until(pilot, lambda: type(app.screen).__name__ == "LogsView"
                    and len(app.screen.query_one("#tail").buffer) > 0, what="the deployment's logs")  # type: ignore
        assert any("loaded" in line for _, line in app.screen.query_one("#tail").buffer)  # type: ignore
        for view, expect in [("models", "iris"), ("events", "deployment.created"), ("jobs", None),
                             ("environments", None)]:
            app.switch_to(view)
            await until(pilot, lambda: isinstance(app.screen, View) and app.screen.polls >= 1, what=view)
            if expect:
                assert expect in table_text(app), view
        app.switch_to("metrics", "my-ep")
        await until(pilot, lambda: any(app.history.of("my-ep")), what="metrics")
        assert ("my-ep", "blue") in app.history.series
        app.switch_to("requests")
        await until(pilot, lambda: isinstance(app.screen, RequestsView) and app.screen.polls >= 0, what="requests")
        await pilot.press("escape")  # back
        await pilot.pause(0.1)
        assert type(app.screen).__name__ == "MetricsView"


async def test_traffic_set_in_the_ui_is_what_the_cli_reports(blue_green: Daemon) -> None:
    daemon = blue_green
    app = tui(daemon)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: "my-ep" in table_text(app), what="the endpoints view")
        await pilot.press("t")
        form = await until(pilot, lambda: app.screen if isinstance(app.screen, ActionForm) else None)
        await pilot.press("ctrl+u", *"blue=90 green=20", "enter")  # 110: refused, in place, nothing changes
        await until(pilot, lambda: "add up to" in form.error_message, what="the refusal")
        assert "refused" in form.error_message and "110" in form.error_message
        assert app.screen is form
        shown = json.loads(daemon.cli("online-endpoint", "show", "-n", "my-ep", "-o", "json").stdout)
        assert shown["traffic"] == {}
        await pilot.press("ctrl+u", *"blue=90 green=10", "enter")
        await until(pilot, lambda: not isinstance(app.screen, ActionForm), what="the form to close")
        shown = json.loads(daemon.cli("online-endpoint", "show", "-n", "my-ep", "-o", "json").stdout)
        assert shown["traffic"] == {"blue": 90, "green": 10}
        await until(pilot, lambda: "90" in table_text(app) and "10" in table_text(app), what="the bars")


async def test_request_tail_shows_a_curl_request_within_a_second(blue_green: Daemon) -> None:
    daemon = blue_green
    key = daemon.key("my-ep")
    app = tui(daemon)
    async with app.run_test(size=(120, 40)) as pilot:
        app.switch_to("requests", "my-ep")
        view = await until(pilot, lambda: app.screen if isinstance(app.screen, RequestsView) else None)
        await pilot.pause(0.5)  # the first poll (from now) is in
        out = subprocess.run(["curl", "-sS", "-i", f"{daemon.url}/endpoints/my-ep/score", "-H",
                              f"Authorization: Bearer {key}", "-H", "Content-Type: application/json",
                              "-H", "azureml-model-deployment: blue", "-d", SAMPLE.decode()],
                             capture_output=True, text=True, check=True).stdout
        sent = time.monotonic()
        request_id = re.search(r"x-request-id: (\S+)", out, re.I).group(1)  # type: ignore[union-attr]
        await until(pilot, lambda: any(request_id[:8] in line for _, line in view.log_widget.buffer), 1.0,
                    "the request in the tail")
        took = time.monotonic() - sent
        assert took < 1.0
        line = next(line for _, line in view.log_widget.buffer if request_id[:8] in line)
        assert "blue" in line and " 200 " in line


@pytest.mark.skipif(not shutil.which("wrk"), reason="needs wrk")
async def test_request_tail_keeps_up_with_thousands_a_second(blue_green: Daemon, tmp_path: Path) -> None:
    daemon = blue_green
    daemon.cli("online-endpoint", "update", "-n", "my-ep", "--traffic", "blue=100")
    key = daemon.key("my-ep")
    script = tmp_path / "post.lua"
    script.write_text(f'wrk.method = "POST"\nwrk.body = {json.dumps(SAMPLE.decode())}\n'
                      f'wrk.headers["Content-Type"] = "application/json"\n'
                      f'wrk.headers["Authorization"] = "Bearer {key}"\n')
    cap = 10_000
    app = tui(daemon)
    async with app.run_test(size=(120, 40)) as pilot:
        app.switch_to("requests", "my-ep")
        view = await until(pilot, lambda: app.screen if isinstance(app.screen, RequestsView) else None)
        view.cap = cap
        await pilot.pause(0.5)
        load = subprocess.Popen(["wrk", "-t", "1", "-c", "16", "-d", "10s", "-s", str(script),
                                 f"{daemon.url}/endpoints/my-ep/score"], stdout=subprocess.PIPE, text=True)
        lags: list[float] = []
        most = 0
        started = time.monotonic()
        while load.poll() is None:
            await pilot.pause(0.25)
            most = max(most, len(view.log_widget.buffer), len(view.log_widget._lines))
            if view.newest_at and time.monotonic() - started > 1.5:  # after the warm-up
                lags.append(time.time() - view.newest_at)
        report = load.stdout.read() if load.stdout else ""
        await pilot.pause(1.0)
        rate = float(re.search(r"Requests/sec:\s+([\d.]+)", report).group(1))  # type: ignore[union-attr]
        print(f"wrk: {rate:.0f} req/s; view: {view.received} rows, {view.dropped} dropped, "
              f"max lag {max(lags):.3f}s, p50 lag {sorted(lags)[len(lags) // 2]:.3f}s, most kept {most}")
        assert rate >= 2000, f"the daemon served {rate:.0f} req/s: the load is too light to prove anything"
        assert max(lags) <= 1.0, f"the view fell behind: {max(lags):.2f}s"
        assert most <= cap
        assert view.received + view.missed >= rate * 9  # (almost) every request reached the view
        assert view.dropped > 0 and f"{view.dropped:,} dropped" in str(view.title_text())
