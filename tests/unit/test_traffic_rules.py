"""Azure's traffic and mirror rules, `--traffic` parsing, and the router's weighted choice."""

from __future__ import annotations

from collections import Counter

import pytest

from appliance.router.traffic import Split
from appliance.specs import SpecError
from appliance.specs.traffic import check, parse_assignments

DEPLOYMENTS = ("blue", "green", "red")


# -- parse_assignments ----------------------------------------------------------------------


@pytest.mark.parametrize("text", ["blue=90,green=10", "blue=90 green=10", "blue=90, green=10",
                                  "  blue=90   green=10  "])
def test_parse_assignments_accepts_commas_and_spaces(text: str) -> None:
    assert parse_assignments(text, "traffic") == {"blue": 90, "green": 10}


def test_parse_assignments_of_nothing_is_empty() -> None:
    assert parse_assignments("", "traffic") == {}


@pytest.mark.parametrize(("text", "bad"), [("blue", "blue"), ("blue=", "blue="), ("=90", "=90"),
                                           ("blue=ninety", "blue=ninety"), ("blue=-5", "blue=-5"),
                                           ("blue=90,green:10", "green:10")])
@pytest.mark.parametrize("field", ["traffic", "mirror_traffic"])
def test_malformed_assignments_are_rejected_with_field(text: str, bad: str, field: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_assignments(text, field)
    assert info.value.field == field
    assert repr(bad) in str(info.value)
    assert "blue=90,green=10" in str(info.value)  # shows the expected form


# -- check ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("traffic", "mirror"),
    [
        ({}, {}),
        ({"blue": 0, "green": 0}, {}),
        ({"blue": 100}, {}),
        ({"blue": 90, "green": 10}, {}),
        ({"blue": 30, "green": 30, "red": 40}, {}),
        ({"blue": 100}, {"green": 50}),
        ({"blue": 100, "green": 0}, {"green": 10}),
        ({"blue": 100}, {"green": 20, "red": 0}),  # a 0% mirror entry is not a second target
        ({}, {"green": 10}),
    ],
)
def test_valid_traffic_passes(traffic: dict[str, int], mirror: dict[str, int]) -> None:
    check(traffic, mirror, DEPLOYMENTS)


@pytest.mark.parametrize("traffic", [{"blue": 90}, {"blue": 60, "green": 60}, {"blue": 1}])
def test_live_traffic_must_sum_to_0_or_100(traffic: dict[str, int]) -> None:
    with pytest.raises(SpecError) as info:
        check(traffic, {}, DEPLOYMENTS)
    assert info.value.field == "traffic"
    assert f"adds up to {sum(traffic.values())}" in str(info.value)
    assert "0 or 100" in str(info.value)


def test_only_one_mirror_deployment() -> None:
    with pytest.raises(SpecError) as info:
        check({"blue": 100}, {"green": 10, "red": 10}, DEPLOYMENTS)
    assert info.value.field == "mirror_traffic"
    assert "green" in str(info.value)
    assert "red" in str(info.value)


@pytest.mark.parametrize("percent", [51, 100])
def test_mirror_is_at_most_50(percent: int) -> None:
    with pytest.raises(SpecError) as info:
        check({"blue": 100}, {"green": percent}, DEPLOYMENTS)
    assert info.value.field == "mirror_traffic.green"
    assert f"green={percent}" in str(info.value)
    assert "50%" in str(info.value)


def test_mirror_target_must_have_no_live_traffic() -> None:
    with pytest.raises(SpecError) as info:
        check({"blue": 90, "green": 10}, {"green": 10}, DEPLOYMENTS)
    assert info.value.field == "mirror_traffic.green"
    assert "'green'" in str(info.value)
    assert "10%" in str(info.value)


@pytest.mark.parametrize(
    ("traffic", "mirror", "field"),
    [
        ({"blue": 90, "purple": 10}, {}, "traffic.purple"),
        ({"blue": 100}, {"purple": 10}, "mirror_traffic.purple"),
    ],
)
def test_unknown_deployments_are_rejected_naming_them(traffic: dict[str, int], mirror: dict[str, int],
                                                      field: str) -> None:
    with pytest.raises(SpecError) as info:
        check(traffic, mirror, DEPLOYMENTS)
    assert info.value.field == field
    message = str(info.value)
    assert "'purple'" in message
    assert "blue, green, red" in message  # what the endpoint does have


def test_endpoint_without_deployments_says_so() -> None:
    with pytest.raises(SpecError) as info:
        check({"blue": 100}, {}, [])
    assert info.value.field == "traffic.blue"
    assert "none" in str(info.value)


@pytest.mark.parametrize(("percent", "field"), [(150, "traffic.blue"), (-5, "traffic.blue")])
def test_percentages_out_of_range_are_rejected(percent: int, field: str) -> None:
    with pytest.raises(SpecError) as info:
        check({"blue": percent}, {}, DEPLOYMENTS)
    assert info.value.field == field
    assert str(percent) in str(info.value)


# -- Split ----------------------------------------------------------------------------------


def grid(split: Split, points: int) -> Counter[str | None]:
    return Counter(split.choose(i / points) for i in range(points))


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        ({"blue": 90, "green": 10}, {"blue": 9000, "green": 1000}),
        ({"green": 10, "blue": 90}, {"blue": 9000, "green": 1000}),
        ({"blue": 100}, {"blue": 10000}),
        ({"a": 33, "b": 33, "c": 34}, {"a": 3300, "b": 3300, "c": 3400}),
        ({"a": 1, "b": 99}, {"a": 100, "b": 9900}),
        ({"a": 7, "b": 13, "c": 80}, {"a": 700, "b": 1300, "c": 8000}),
    ],
)
def test_split_gives_exact_proportions_on_a_grid(weights: dict[str, int], expected: dict[str, int]) -> None:
    assert grid(Split.of(weights), 10_000) == Counter(expected)


def test_split_weights_need_not_sum_to_100() -> None:
    assert grid(Split.of({"x": 3, "y": 1}), 1000) == Counter({"x": 750, "y": 250})


def test_zero_weights_are_never_chosen() -> None:
    split = Split.of({"a": 50, "b": 0, "c": 50, "d": 0})
    counts = grid(split, 10_000)
    assert counts == Counter({"a": 5000, "c": 5000})
    assert split.choose(0.0) == "a"
    assert split.choose(0.5) == "c"


def test_split_extremes_of_u_land_on_first_and_last() -> None:
    split = Split.of({"blue": 90, "green": 10})
    assert split.choose(0.0) == "blue"
    assert split.choose(0.8999) == "blue"
    assert split.choose(0.9) == "green"
    assert split.choose(0.9999999999999999) == "green"


@pytest.mark.parametrize("weights", [{}, {"blue": 0}, {"blue": 0, "green": 0}])
def test_split_with_nothing_live_chooses_none(weights: dict[str, int]) -> None:
    split = Split.of(weights)
    assert split.total == 0
    assert split.choose(0.0) is None
    assert split.choose(0.5) is None
