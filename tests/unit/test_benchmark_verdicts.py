"""The benchmark harness's verdicts on the alternated costs: a median with an interval that decides."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import report


def test_nine_values_give_the_second_to_the_eighth_at_96_percent() -> None:
    low, high, coverage = report.median_interval([9, 1, 8, 2, 7, 3, 6, 4, 5])
    assert (low, high) == (2, 8)
    assert coverage == pytest.approx(1 - 2 * 10 / 512)


def test_too_few_values_give_min_and_max_at_the_coverage_they_have() -> None:
    assert report.median_interval([3.0, 1.0, 2.0]) == (1.0, 3.0, 0.75)


def _log_target(on: list[float], off: list[float]) -> dict:
    rows = report.targets({}, None, None, alternated={"request_log": {"on": on, "off": off}})
    return next(r for r in rows if r["target"].startswith("request log"))


def test_a_cost_whose_whole_interval_is_under_the_limit_passes() -> None:
    row = _log_target([97, 98, 99, 98, 97, 98, 99, 98, 98], [100] * 9)
    assert row["result"] == "PASS"
    assert row["measured"].startswith("2.0%")
    assert "96% interval 1.0% to 3.0%" in row["note"]


def test_a_cost_whose_whole_interval_is_over_the_limit_fails() -> None:
    assert _log_target([90, 91, 92, 89, 90, 91, 92, 90, 90], [100] * 9)["result"] == "FAIL"


def test_a_median_under_the_limit_with_an_interval_across_it_decides_nothing() -> None:
    # Median cost 3%, but pairs from 0% to 12%: a machine this noisy cannot tell 3% from 8%.
    row = _log_target([100, 88, 97, 99, 91, 97, 98, 94, 96], [100] * 9)
    assert row["result"] == "UNDECIDED"
    assert "more pairs" in row["note"]


def _scenario(rps: float, p99_c16: float, ol_rate: float, ol_p99: float, at_a_p99: float | None = None) -> dict:
    sc = {"label": "", "wrk_c16": {"requests_per_s": rps, "latency_ms": {"p50": 1.0, "p99": p99_c16}, "errors": 0},
          "wrk_c1": {"requests_per_s": 1, "latency_ms": {"p50": 0.1, "p99": 0.2}, "errors": 0},
          "open_loop": {"target_rate": ol_rate, "latency_ms": {"p50": 0.2, "p99": ol_p99, "p99.9": 2}, "errors": 0}}
    if at_a_p99 is not None:
        sc["open_loop_at_a"] = {"target_rate": 800, "latency_ms": {"p50": 0.1, "p99": at_a_p99, "p99.9": 1},
                                "errors": 0}
    return sc


def test_the_open_loop_tails_are_judged_at_the_same_rate_and_at_each_servers_own_share() -> None:
    scenarios = {"a": _scenario(1600, 14.0, 800, 1.2), "b": _scenario(8000, 4.7, 4000, 1.1, at_a_p99=0.3)}
    rows = {r["target"]: r for r in report.targets(scenarios, None, None)}
    same = rows["(b) p99 vs (a), open loop at (a)'s rate"]
    assert same["result"] == "PASS" and same["measured"].startswith("0.25× (300 µs at 800/s vs 1.20 ms)")
    own = rows["(b) p99 vs (a), open loop at half of each's capacity"]
    assert own["result"] == "FAIL" and "4,000/s" in own["measured"]


def test_the_table_shows_each_servers_tail_at_the_baselines_rate_against_the_baselines_own() -> None:
    from rich.console import Console

    scenarios = {"a": _scenario(1600, 14.0, 800, 1.2), "b": _scenario(8000, 4.7, 4000, 1.1, at_a_p99=0.3)}
    console = Console(width=400, record=True)
    console.print(report.table(scenarios, 16))
    b_row = next(line for line in console.export_text().splitlines() if line.lstrip("│ ").startswith("b "))
    assert "300 µs (0.25×)" in b_row


_RAN = {"appliance": {"code": "f05c7b7a1b2c"}, "machine": {"cpu": "AMD EPYC", "pin_mode": "split"}}


def test_the_pairs_of_several_runs_are_judged_together() -> None:
    """Two runs of 9 pairs each decide nothing alone (two pairs in each cost 6 and 7%); their 18 pairs
    together put the whole interval under the limit. A run's unfinished pair is left out."""
    def doc(on: list[float], off: list[float]) -> dict:
        return {**_RAN, "scenarios": {}, "apply": None, "hot_reload": None,
                "alternated": {"request_log": {"on": on, "off": off}},
                "alternated_cpu_us_per_request": {"request_log": {"on": [102.0] * len(on), "off": [100.0] * len(off)}}}
    first = doc([100, 97, 98, 94, 98, 97, 98, 93, 98], [100] * 9)
    second = doc([98, 99, 97, 98, 98, 100, 94, 97, 93, 95], [100] * 9)  # its 10th run never got its pair
    alone = [_log_target(d["alternated"]["request_log"]["on"], [100] * 9)["result"] for d in (first, second)]
    assert alone == ["UNDECIDED", "UNDECIDED"]
    pooled = report.pooled({"first.json": first, "second.json": second})
    row = next(r for r in pooled["targets"] if r["target"].startswith("request log"))
    assert row["result"] == "PASS" and "median of 18 alternated pairs" in row["note"]
    assert pooled["pooled_from"] == 2 and len(pooled["alternated_cpu_us_per_request"]["request_log"]["on"]) == 18
    assert first["alternated"]["request_log"]["on"][0] == 100  # the documents themselves are left as they were


def test_runs_of_other_code_are_not_judged_together() -> None:
    """Pooling runs of two commits would judge neither: refused, each file named with what it ran."""
    pairs = {"alternated": {"mirror": {"on": [90.0], "off": [100.0]}}}
    this = {**_RAN, **pairs}
    other = {**_RAN, **pairs, "appliance": {"code": "62f941e0d1c2 with uncommitted changes 0a1b2c3d4e5f"}}
    older = {**pairs, "machine": _RAN["machine"]}
    with pytest.raises(ValueError) as refused:
        report.pooled({"this.json": this, "other.json": other, "older.json": older})
    message = str(refused.value)
    assert "same code on the same machine" in message
    assert "  this.json: f05c7b7a1b2c; CPU AMD EPYC" in message
    assert "  other.json: 62f941e0d1c2 with uncommitted changes 0a1b2c3d4e5f;" in message
    assert "  older.json: code not recorded (an older harness);" in message


def test_cli_start_up_is_judged_against_150_ms_and_survives_pooling() -> None:
    startup = {"runs": 9, "endpoint_list": {"runs": 9, "median_ms": 80.0, "min_ms": 70.0, "max_ms": 90.0},
               "help": {"runs": 9, "median_ms": 210.0, "min_ms": 200.0, "max_ms": 250.0},
               "peer": {"runs": 9, "median_ms": 40.0, "min_ms": 35.0, "max_ms": 45.0,
                        "command": "kubectl version --client"}}
    rows = {r["target"]: r for r in report.targets({}, None, None, startup=startup)}
    listed = next(r for name, r in rows.items() if "endpoint list" in name)
    assert listed["result"] == "PASS" and listed["measured"] == "80 ms" and "2.0× `kubectl" in listed["note"]
    assert next(r for name, r in rows.items() if "--help" in name)["result"] == "FAIL"
    doc = {"scenarios": {}, "startup": startup, "alternated": {}, "alternated_cpu_us_per_request": {},
           "appliance": {"code": "abc"}, "machine": {"cpu": "x", "pin_mode": "split"}}
    assert any("endpoint list" in r["target"] for r in report.pooled({"a.json": doc})["targets"])
