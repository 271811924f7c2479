"""The TUI's pure parts: bars, traffic parsing, the request filter, column fitting."""

from __future__ import annotations

import pytest

from tui.format import bar, fit_columns, fit_hints, parse_request_filter, parse_traffic


def test_bar_fills_in_eighths_and_keeps_its_width() -> None:
    assert bar(0, 4) == "░░░░" and bar(1, 4) == "████" and len(bar(0.33, 9)) == 9


def test_parse_traffic() -> None:
    assert parse_traffic("blue=90 green=10") == {"blue": 90, "green": 10}
    assert parse_traffic("blue=90,green=10") == {"blue": 90, "green": 10} and parse_traffic("") == {}
    with pytest.raises(ValueError):
        parse_traffic("blue:90")


def test_request_filter() -> None:
    f = parse_request_filter("deployment=blue status>=500 latency>10 boom")
    row = {"deployment": "blue", "status": 503, "latency_ms": 12.0}
    assert f.matches(row, "... BOOM ...") and not f.matches({**row, "status": 200}, "boom")
    assert not f.matches({**row, "latency_ms": 5}, "boom") and not f.matches({**row, "deployment": "g"}, "boom")
    five = parse_request_filter("status=5xx")
    assert five.matches({"status": 502}, "") and not five.matches({"status": 404}, "")


def test_columns_drop_from_the_right_in_a_fixed_order() -> None:
    cols = [("name", 10, 0), ("a", 10, 2), ("b", 10, 1), ("c", 10, 3)]
    assert fit_columns(cols, 100) == ["name", "a", "b", "c"]
    assert fit_columns(cols, 30) == ["name", "b"]
    assert fit_columns(cols, 5) == ["name"]
    assert fit_hints([("a", "xx"), ("b", "yy")], 8) == "<a>xx"
