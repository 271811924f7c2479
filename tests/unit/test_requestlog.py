"""The request log on a real DuckDB file: the batching writer, and the logs, metrics and mirror queries."""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import KEY, wait_until

from appliance.registry import Registry
from appliance.registry.requestlog import COLUMNS, SLICE, RequestLogStore
from appliance.telemetry import requestlog
from appliance.telemetry.events import FIELDS, RequestEvent
from appliance.telemetry.requestlog import RequestLog


@pytest.fixture
def store(registry: Registry) -> RequestLogStore:
    return RequestLogStore(registry)


def event(request_id: str = "r", *, endpoint: str = "my-ep", deployment: str = "blue", mirrored: bool = False,
          status: int = 200, latency_ms: float = 1.0, digest: str | None = None, age: float = 0.0) -> RequestEvent:
    """A row; `digest` names a response body, whose CRC-32 the row carries."""
    return (time.time() - age, request_id, endpoint, deployment, f"{deployment}-0" if deployment else "",
            mirrored, status, latency_ms, 10, 20, "primary", None if digest is None else zlib.crc32(digest.encode()))


def ids(rows: list[dict[str, Any]]) -> list[str]:
    return [r["request_id"] for r in rows]


def test_columns_are_the_event_fields() -> None:
    assert FIELDS == COLUMNS


def test_insert_round_trips_every_field(store: RequestLogStore) -> None:
    sent: RequestEvent = (1_700_000_000.123456, "abc", "my-ep", "blue", "blue-0", True, 424, 12.5, 300, 40,
                          "secondary", 0x89ABCDEF)
    store.insert([sent])
    store.insert([])
    store.insert([(*sent[:11], None)])
    [row, plain] = store.tail("my-ep")
    assert (row.pop("id"), plain.pop("id")) == (1, 2)
    assert str(row.pop("at")) == "2023-11-14 22:13:20.123456"  # UTC
    assert tuple(row.values()) == (*sent[1:11], "89abcdef")  # the digest as hex text, as a user reads it
    assert plain["body_digest"] == ""


def test_a_batch_of_several_slices_keeps_every_row_in_order(store: RequestLogStore) -> None:
    sent = [event(f"r{i}", latency_ms=float(i), status=200 + i % 3) for i in range(2 * SLICE + 5)]
    store.insert(sent)
    got = store.tail("my-ep", limit=10_000)
    assert ids(got) == [f"r{i}" for i in range(len(sent))]
    assert [r["id"] for r in got] == list(range(1, len(sent) + 1))
    assert [(r["latency_ms"], r["status"]) for r in got] == [(e[7], e[6]) for e in sent]


# -- the writer -----------------------------------------------------------------------------


def test_writer_thread_persists_rows_on_its_own(store: RequestLogStore) -> None:
    writer = RequestLog(store, interval=0.05)
    writer.start()
    try:
        for i in range(10):
            writer.record(event(f"r{i}"))
        wait_until(lambda: len(store.tail("my-ep")) == 10, 10, "the writer's timed drain")
        assert writer.written == 10 and writer.pending == 0
    finally:
        writer.close()


def test_a_full_batch_wakes_the_writer_before_its_interval(store: RequestLogStore) -> None:
    writer = RequestLog(store, batch=100, interval=3600)
    writer.start()
    try:
        for i in range(100):
            writer.record(event(f"r{i}"))
        wait_until(lambda: writer.written == 100, 10, "a batch-triggered drain")
    finally:
        writer.close()


def test_flush_makes_recorded_rows_visible(store: RequestLogStore) -> None:
    writer = RequestLog(store, interval=3600)
    writer.start()
    try:
        writer.record(event("first"))
        assert writer.flush(timeout=10)
        assert ids(store.tail("my-ep")) == ["first"]
    finally:
        writer.close()


def test_close_loses_nothing(store: RequestLogStore) -> None:
    writer = RequestLog(store)
    writer.start()
    for i in range(50_000):
        writer.record(event(f"r{i}", latency_ms=i))
    writer.close()
    assert (writer.written, writer.failed, writer.dropped, writer.pending) == (50_000, 0, 0, 0)
    rows = store.tail("my-ep", limit=100_000)
    assert ids(rows) == [f"r{i}" for i in range(50_000)]  # in the order recorded
    writer.record(event("late"))
    assert writer.dropped == 1 and writer.pending == 0


def test_prune_deletes_only_the_rows_older_than_the_retention(store: RequestLogStore) -> None:
    store.insert([event("old", age=7200), event("recent", age=60), event("new")])
    assert store.prune(3600) == 1
    kept = store.tail("my-ep")
    assert ids(kept) == ["recent", "new"] and [r["id"] for r in kept] == [2, 3]  # the rest untouched
    assert store.prune(3600) == 0


def test_the_writer_deletes_rows_past_their_retention_on_its_own(store: RequestLogStore) -> None:
    store.insert([event("from-last-week", age=7 * 86400)])  # e.g. left by an earlier daemon
    writer = RequestLog(store, interval=0.05, retention=2.0)
    assert writer.prune_every == 0.5  # a short retention is kept to closely
    writer.start()
    try:
        wait_until(lambda: writer.pruned == 1, 10, "the first pass to delete last week's row")
        writer.record(event("fresh", age=1.0))
        assert writer.flush(timeout=10) and ids(store.tail("my-ep")) == ["fresh"]
        wait_until(lambda: store.tail("my-ep") == [], 10, "the fresh row to age past 2 s and go")
        # The count follows the delete's commit on the writer thread: seen a moment after the row is gone.
        wait_until(lambda: writer.pruned == 2, 10, "the writer to count the row it deleted")
        assert writer.written == 1
    finally:
        writer.close()


def test_the_writer_keeps_the_log_under_its_size_cap(store: RequestLogStore, home: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(requestlog, "SIZE_EVERY", 0.0)  # a check at every pass that wrote rows
    cap = 4 << 20
    writer = RequestLog(store, interval=0.05, max_bytes=cap)
    writer.start()
    try:
        sizes = []
        for batch in range(40):  # about six times the cap in rows, each with a 36-byte random id
            for i in range(5_000):
                writer.record(event(f"{batch:04d}-{i:05d}-{np.random.bytes(12).hex()}"))
            assert writer.flush(timeout=30)
            wait_until(lambda: store.used_bytes() <= cap, 10, "the writer to cut the log back under its cap")
            sizes.append(sum(f.stat().st_size for f in home.glob("appliance.duckdb*")))  # file and its WAL
        assert writer.pruned > 0 and writer.failed == 0
        newest = store.tail("my-ep", limit=1)
        assert ids(newest)[0].startswith("0039-04999")  # the newest row is kept; the oldest went
        assert not [r for r in store.tail("my-ep", limit=100_000) if r["request_id"].startswith("0000-")]
        # The files stop growing: freed blocks are reused (the cap bounds the blocks in use and the WAL).
        assert max(sizes) <= 1.5 * cap, sizes
    finally:
        writer.close()


def test_under_its_cap_the_size_check_reads_only_the_files_sizes(store: RequestLogStore,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The blocks in use never exceed the files, so while the files are under the cap no query is run (the
    database's own size query took 11-16 ms of CPU on the servers' core, every second, even when idle)."""
    store.insert([event("r1")])
    queried: list[int] = []
    used = store._used_bytes
    monkeypatch.setattr(store, "_used_bytes", lambda: queried.append(1) or used())
    assert store.shrink(1 << 30) == 0 and queried == []
    assert store.shrink(1) == 1 and queried == [1]  # past the cap: asked, and cut back
    assert store.tail("my-ep") == []


def test_an_idle_writer_leaves_the_database_alone(store: RequestLogStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """An idle daemon costs its core nothing: the size cap is checked at the first pass (a log left too
    large by an earlier daemon is cut back), then only after rows were written."""
    checks: list[float] = []
    shrink = store.shrink
    monkeypatch.setattr(store, "shrink", lambda cap: checks.append(cap) or shrink(cap))
    monkeypatch.setattr(requestlog, "SIZE_EVERY", 0.0)  # every pass may check: the passes are the clock
    writer = RequestLog(store, interval=3600, max_bytes=1 << 30)
    writer.start()
    try:
        for _ in range(5):  # each flush is one more pass of the writer, with nothing to write
            assert writer.flush(timeout=10)
        assert len(checks) == 1, f"the size was checked {len(checks)} times with nothing written"
        writer.record(event("r1"))
        assert writer.flush(timeout=10)
        wait_until(lambda: len(checks) == 2, 10, "a check after rows were written")
    finally:
        writer.close()


def test_memory_is_bounded_by_dropping_the_oldest(store: RequestLogStore) -> None:
    writer = RequestLog(store, max_pending=10)  # not started: flush() drains in the caller
    for i in range(15):
        writer.record(event(f"r{i}"))
    assert writer.dropped == 5 and writer.pending == 10
    writer.flush()
    assert ids(store.tail("my-ep")) == [f"r{i}" for i in range(5, 15)]


def test_a_mirrored_request_is_one_event_and_two_rows(store: RequestLogStore) -> None:
    """The live row, then its copy's right after it, sharing time, id, endpoint, size in and key."""
    writer = RequestLog(store)
    live = event("m1", status=200, latency_ms=2.0)
    writer.record((*live, zlib.crc32(b"same"), "green", "green-0", 200, 3.5, 4, zlib.crc32(b"same")))
    writer.record((*event("m2"), zlib.crc32(b"live"), "green", "", 0, 30000.0, 0, zlib.crc32(b"")))
    writer.record(event("plain"))
    writer.flush()
    assert writer.written == 3
    rows = store.tail("my-ep")
    assert [(r["request_id"], r["deployment"], r["instance"], r["mirrored"], r["status"]) for r in rows] == [
        ("m1", "blue", "blue-0", False, 200), ("m1", "green", "green-0", True, 200),
        ("m2", "blue", "blue-0", False, 200), ("m2", "green", "", True, 0),
        ("plain", "blue", "blue-0", False, 200)]
    first, copy = rows[0], rows[1]
    assert (copy["at"], copy["bytes_in"], copy["key_id"]) == (first["at"], first["bytes_in"], first["key_id"])
    assert (first["latency_ms"], copy["latency_ms"], copy["bytes_out"]) == (2.0, 3.5, 4)
    assert first["body_digest"] == copy["body_digest"] == f"{zlib.crc32(b'same'):08x}"
    assert rows[2]["body_digest"] != rows[3]["body_digest"] and rows[4]["body_digest"] == ""
    report = store.mirror_report("my-ep", 600)
    assert (report["pairs"], report["agreed"], report["mirror_errors"]) == (2, 1, 1)


class BrokenStore:
    def insert(self, rows: Sequence[tuple[Any, ...]]) -> None:
        raise RuntimeError("disk full")


def test_write_failures_are_counted_and_logged_never_raised(caplog: pytest.LogCaptureFixture) -> None:
    writer = RequestLog(BrokenStore(), batch=3)  # type: ignore[arg-type]
    writer.start()
    for i in range(7):
        writer.record(event(f"r{i}"))
    with caplog.at_level(logging.WARNING, logger="appliance.telemetry"):
        assert writer.flush(timeout=10)
        writer.close()
    assert (writer.written, writer.failed) == (0, 7)
    assert "disk full" in caplog.text


def test_rows_survive_reopening_the_registry(tmp_path: Path) -> None:
    first = Registry(tmp_path, KEY)
    writer = RequestLog(RequestLogStore(first))
    writer.start()
    for i in range(3):
        writer.record(event(f"r{i}"))
    writer.close()
    first.close()

    again = Registry(tmp_path, KEY)
    try:
        store = RequestLogStore(again)
        assert ids(store.tail("my-ep")) == ["r0", "r1", "r2"]
        store.insert([event("r3")])
        assert [r["id"] for r in store.tail("my-ep")] == [1, 2, 3, 4]  # the numbering carries on
        assert store.prune(0) == 4  # every row gone: still, an id is never given twice
        RequestLogStore(again).insert([event("r5")])
        assert [r["id"] for r in store.tail("my-ep")] == [5]
    finally:
        again.close()


# -- logs -----------------------------------------------------------------------------------


def test_tail_filters_by_endpoint_deployment_and_age(store: RequestLogStore) -> None:
    store.insert([event("old", age=600), event("blue"), event("green", deployment="green"),
                  event("other", endpoint="other-ep"), event("mirror", deployment="green", mirrored=True)])
    assert ids(store.tail("my-ep")) == ["old", "blue", "green", "mirror"]
    assert ids(store.tail("my-ep", since_seconds=300)) == ["blue", "green", "mirror"]
    assert ids(store.tail("my-ep", deployment="green")) == ["green", "mirror"]
    assert ids(store.tail("other-ep")) == ["other"]
    assert store.tail("no-such-ep") == []


def test_tail_limit_keeps_the_newest_and_after_id_follows_without_gaps(store: RequestLogStore) -> None:
    store.insert([event(f"r{i}") for i in range(10)])
    newest = store.tail("my-ep", limit=3)
    assert ids(newest) == ["r7", "r8", "r9"]
    assert store.tail("my-ep", after_id=newest[-1]["id"]) == []

    store.insert([event(f"n{i}") for i in range(5)])
    follow = store.tail("my-ep", after_id=newest[-1]["id"], limit=2)  # behind: the oldest new rows first
    assert ids(follow) == ["n0", "n1"]
    assert ids(store.tail("my-ep", after_id=follow[-1]["id"])) == ["n2", "n3", "n4"]


# -- metrics --------------------------------------------------------------------------------


def test_metrics_per_deployment_match_numpy(store: RequestLogStore) -> None:
    rng = np.random.default_rng(7)
    blue = rng.gamma(2.0, 10.0, 200)
    green = rng.gamma(3.0, 5.0, 50)
    statuses = [500] * 4 + [429] * 6 + [200] * 190
    store.insert([event(f"b{i}", latency_ms=float(ms), status=s) for i, (ms, s) in enumerate(zip(blue, statuses,
                                                                                                 strict=True))]
                 + [event(f"g{i}", deployment="green", latency_ms=float(ms)) for i, ms in enumerate(green)]
                 + [event(f"m{i}", deployment="green", mirrored=True, latency_ms=1e6, status=500) for i in range(7)]
                 + [event("old", latency_ms=1e6, status=500, age=3600),
                    event("refused", deployment="", status=401)])

    by_name = {m["deployment"]: m for m in store.metrics("my-ep", 60)}
    assert set(by_name) == {"", "blue", "green"}
    b, g = by_name["blue"], by_name["green"]
    assert (b["requests"], b["mirrored"], g["requests"], g["mirrored"]) == (200, 0, 50, 7)
    assert b["requests_per_second"] == pytest.approx(200 / 60)
    for metrics, latencies in ((b, blue), (g, green)):  # mirrored copies do not count
        expected = np.percentile(latencies, [50, 95, 99])
        assert [metrics["p50_ms"], metrics["p95_ms"], metrics["p99_ms"]] == pytest.approx(expected)
    assert b["error_rate"] == pytest.approx(10 / 200) and b["server_error_rate"] == pytest.approx(4 / 200)
    assert g["error_rate"] == 0 and g["server_error_rate"] == 0
    assert by_name[""]["error_rate"] == 1


def test_metrics_of_a_mirror_only_deployment_have_no_latency(store: RequestLogStore) -> None:
    store.insert([event("m", deployment="green", mirrored=True)])
    [green] = store.metrics("my-ep", 60)
    assert (green["requests"], green["mirrored"], green["p50_ms"], green["error_rate"]) == (0, 1, None, None)
    with pytest.raises(ValueError, match="positive"):
        store.metrics("my-ep", 0)


# -- mirror report --------------------------------------------------------------------------


def test_mirror_report_compares_each_copy_with_its_live_answer(store: RequestLogStore) -> None:
    live_ms = [10.0 + i for i in range(10)]
    mirror_ms = [100.0 + 5 * i for i in range(10)]
    # (live status, live digest, mirror status, mirror digest): 7 agree, then 3 that do not.
    cases = [(200, "same", 200, "same")] * 7 + [
        (200, "same", 500, "oops"),   # the mirror failed
        (200, "blue", 200, "green"),  # both fine, different answers
        (424, "err", 424, "err"),     # equal, but not a success
    ]
    rows = [event("r0", status=500, digest="earlier-use-of-the-id", latency_ms=1e6, age=30),
            event("lonely", endpoint="other-ep", digest="same")]  # same id, another endpoint: no partner
    for i, ((ls, ld, ms, md), lms, mms) in enumerate(zip(cases, live_ms, mirror_ms, strict=True)):
        rows.append(event(f"r{i}", status=ls, digest=ld, latency_ms=lms))
        rows.append(event(f"r{i}", deployment="green", mirrored=True, status=ms, digest=md, latency_ms=mms))
    rows += [event("lonely", deployment="green", mirrored=True, digest="same", latency_ms=1e6),
             event("r1", digest="a-later-reuse", latency_ms=1e6),  # after its mirror: not its partner
             event("stale", deployment="green", mirrored=True, age=3600)]
    store.insert(rows)

    report = store.mirror_report("my-ep", 600)
    live_p = np.percentile(live_ms, [50, 95])
    mirror_p = np.percentile(mirror_ms, [50, 95])
    assert report == {
        "mirrored": 11, "pairs": 10, "agreed": 7, "agreement_rate": pytest.approx(0.7), "unpaired": 1,
        "live_errors": 1, "mirror_errors": 2,
        "live_p50_ms": pytest.approx(live_p[0]), "live_p95_ms": pytest.approx(live_p[1]),
        "mirror_p50_ms": pytest.approx(mirror_p[0]), "mirror_p95_ms": pytest.approx(mirror_p[1]),
        "mirror_deployments": ["green"],
    }


def test_mirror_report_without_mirrored_rows(store: RequestLogStore) -> None:
    store.insert([event("r")])
    report = store.mirror_report("my-ep", 600)
    assert (report["mirrored"], report["pairs"], report["agreement_rate"], report["mirror_p50_ms"]) == (0, 0, None,
                                                                                                         None)
    assert report["mirror_deployments"] == []


def test_a_batch_that_fails_leaves_no_row_route_or_number_behind(store: RequestLogStore) -> None:
    store.insert([event("r0")])
    with pytest.raises(Exception, match="NOT NULL"):
        store.insert([event("r1", deployment="green"), (*event("r2", deployment="green")[:1], None,
                                                        *event("r2", deployment="green")[2:])])
    store.insert([event("r3", deployment="green")])
    rows = store.tail("my-ep")
    assert [(r["id"], r["request_id"], r["deployment"]) for r in rows] == [(1, "r0", "blue"), (2, "r3", "green")]
