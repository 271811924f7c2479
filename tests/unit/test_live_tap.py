"""The live tap: readers by sequence number see every request once, and are told what they missed."""

from __future__ import annotations

from appliance.telemetry.live import LiveTap


def event(i: int, endpoint: str = "ep") -> tuple[object, ...]:
    return (float(i), f"r{i}", endpoint, "blue", "blue-0", False, 200, 1.0, 10, 20, "primary", None)


def test_a_reader_sees_each_request_once_in_order() -> None:
    tap = LiveTap(size=8)
    start, missed, rows = tap.since(None)
    assert (start, missed, rows) == (0, 0, [])  # "from now"
    for i in range(3):
        tap.append(event(i))
    after, missed, rows = tap.since(start)
    assert [r["request_id"] for r in rows] == ["r0", "r1", "r2"] and missed == 0
    assert tap.since(after) == (3, 0, [])
    tap.append(event(3, "other"))
    tap.append(event(4))
    after2, _, rows = tap.since(after, endpoint="ep")
    assert [r["request_id"] for r in rows] == ["r4"] and after2 == 5


def test_a_slow_reader_is_told_how_many_it_missed() -> None:
    tap = LiveTap(size=4)
    for i in range(10):
        tap.append(event(i))
    after, missed, rows = tap.since(2)
    assert (after, missed) == (10, 4) and [r["request_id"] for r in rows] == ["r6", "r7", "r8", "r9"]
    after, missed, rows = tap.since(6, limit=2)
    assert missed == 2 and [r["request_id"] for r in rows] == ["r8", "r9"]


def test_a_mirrored_request_is_two_rows() -> None:
    tap = LiveTap()
    start = tap.since(None)[0]
    tap.append((*event(1)[:11], 123, 123, "green", "green-0", 200, 2.5, 20, 123))
    _, _, rows = tap.since(start)
    assert [(r["deployment"], r["mirrored"]) for r in rows] == [("blue", False), ("green", True)]
