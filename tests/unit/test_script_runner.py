"""A score.py's run() in process, as the worker calls it: on the calling (main) thread, one call at a
time, with SCORING_TIMEOUT_MS as azmlinfsrv's SIGALRM timer (which cuts a blocking sleep short)."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.scoring.script import ScriptScorer

SCRIPT = '''
import threading
import time

def init():
    pass

def run(raw_data):
    data = __import__("json").loads(raw_data)
    if data.get("sleep"):
        try:
            time.sleep(data["sleep"])
        except TimeoutError:
            if data.get("catch"):
                return {"caught": True}
            raise
    return {"echo": data, "main": threading.current_thread() is threading.main_thread()}
'''


@pytest.fixture
def scorer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptScorer]:
    monkeypatch.setenv("SCORING_TIMEOUT_MS", "200")
    (tmp_path / "score.py").write_text(SCRIPT)
    previous = signal.getsignal(signal.SIGALRM)
    try:
        scorer = ScriptScorer(tmp_path, "score.py")
        scorer.init()
        yield scorer
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _post(scorer: ScriptScorer, body: object) -> tuple[int, dict[bytes, bytes], object]:
    scope = {"method": "POST", "path": "/score", "query_string": b"", "http_version": "1.1",
             "headers": [(b"content-type", b"application/json"), (b"x-request-id", b"r-1")]}
    status, headers, payload = scorer.handle(scope, json.dumps(body).encode())
    return status, dict(headers), json.loads(payload)


def test_run_is_called_on_the_callers_thread_and_answers_as_azmlinfsrv(scorer: ScriptScorer) -> None:
    assert threading.current_thread() is threading.main_thread()
    status, headers, answer = _post(scorer, {"x": 1})
    assert status == 200
    assert answer == {"echo": {"x": 1}, "main": True}
    assert headers[b"x-request-id"] == b"r-1" and float(headers[b"x-ms-run-fn-exec-ms"]) >= 0
    assert headers[b"x-ms-run-function-failed"] == b"False"


def test_scoring_timeout_cuts_a_blocking_sleep_short(scorer: ScriptScorer) -> None:
    started = time.monotonic()
    status, headers, answer = _post(scorer, {"sleep": 30})
    assert status == 500 and answer == {"message": "Scoring timeout after 200 ms"}
    assert headers[b"x-ms-run-function-failed"] == b"True"
    assert time.monotonic() - started < 10  # not the 30 s the call asked for
    # The timer is cleared after each call: the next one is not interrupted.
    assert _post(scorer, {"x": 2})[0] == 200
    time.sleep(0.3)  # past the 200 ms a leftover timer would have fired in
    assert _post(scorer, {"x": 3})[:1] == (200,)


def test_a_run_that_catches_the_timeout_answers_itself(scorer: ScriptScorer) -> None:
    status, _, answer = _post(scorer, {"sleep": 30, "catch": True})
    assert (status, answer) == (200, {"caught": True})
