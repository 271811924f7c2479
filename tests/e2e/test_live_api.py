"""What live views read: the daemon's status, and each request within a second of its answer."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from conftest import Daemon


def test_status_and_live_requests(daemon: Daemon, iris_project: Path) -> None:
    daemon.cli("apply", "-f", "endpoint.yml", "-f", "blue.yml", cwd=iris_project)
    status = daemon.api("GET", "/status").json()
    assert status["home"] == str(daemon.home) and status["url"].endswith(str(daemon.port))
    assert status["online_endpoints"] == 1 and status["request_log"] is True and status["memory_bytes"] > 0
    assert status["docker"].startswith(("available", "not available"))

    start = daemon.api("GET", "/requests/live").json()
    assert start["rows"] == [] and start["logging"] is True
    sent = time.monotonic()
    answer = daemon.score("my-ep", {"data": [[5.1, 3.5, 1.4, 0.2]]})
    assert answer.status_code == 200
    seen = daemon.api("GET", "/requests/live", params={"after": start["next"], "endpoint": "my-ep"}).json()
    assert time.monotonic() - sent < 1.0
    assert [r["request_id"] for r in seen["rows"]] == [answer.headers["x-request-id"]]
    assert seen["rows"][0]["deployment"] == "blue" and seen["missed"] == 0
    # nothing new: the long poll waits (here 0.3 s), then answers empty with the same cursor
    quiet = daemon.api("GET", "/requests/live", params={"after": seen["next"], "wait": 0.3}).json()
    assert quiet["rows"] == [] and quiet["next"] == seen["next"]
    assert httpx.get(f"{daemon.url}/api/v1/requests/live", timeout=5).status_code == 401


def test_restart_replaces_the_instances_and_keeps_serving(daemon: Daemon, iris_project: Path) -> None:
    blue = iris_project / "blue.yml"
    blue.write_text(blue.read_text() + "runtime: process\n")
    daemon.cli("apply", "-f", "endpoint.yml", "-f", "blue.yml", cwd=iris_project)
    before = {i["pid"] for i in daemon.api("GET", "/endpoints/my-ep/deployments/blue").json()["instances"]}
    answer = daemon.api("POST", "/endpoints/my-ep/deployments/blue/restart")
    assert answer.status_code == 200, answer.text
    after = {i["pid"] for i in answer.json()["instances"]}
    assert answer.json()["provisioning_state"] == "Succeeded" and before and after and not before & after
    assert daemon.score("my-ep", {"data": [[5.1, 3.5, 1.4, 0.2]]}).status_code == 200
    events = daemon.api("GET", "/events", params={"subject": "my-ep/blue"}).json()
    assert events[0]["kind"] == "deployment.restarted"
    missing = daemon.api("POST", "/endpoints/my-ep/deployments/nope/restart")
    assert missing.status_code == 404 and "nope" in missing.json()["message"]
