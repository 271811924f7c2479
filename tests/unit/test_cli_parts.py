"""The CLI's pure parts: az's -o tsv, --set pairs and typing, did-you-mean, paths against the caller, tables."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from appliance.cli import output
from appliance.cli.common import command_line_sets, expand_sets, resolve_path
from appliance.cli.main import _global_end, _has_command
from appliance.specs import SpecError, set_field
from appliance.specs.documents import check_set_key, parse
from appliance.specs.yamlsafe import typed


def test_tsv_as_az_prints_it() -> None:
    assert output.tsv("Succeeded") == "Succeeded\n"
    assert output.tsv({"blue": 90, "green": 10}) == "90\t10\n"
    assert output.tsv(["a", "b"]) == "a\nb\n"
    assert output.tsv([{"n": "a", "v": 1}, {"n": "b", "v": None}]) == "a\t1\nb\t\n"
    assert output.tsv({"name": "x", "tags": {"a": 1}, "items": [1, 2, 3], "ok": True}) == "x\t\t3\tTrue\n"
    assert output.tsv(None) == ""


def test_query_is_jmespath() -> None:
    data = {"traffic": {"blue": 90}, "items": [{"name": "a"}, {"name": "b"}]}
    assert output.query(data, "traffic.blue") == 90
    assert output.query(data, "items[].name") == ["a", "b"]


def test_several_pairs_after_one_set() -> None:
    assert expand_sets(["-n", "x", "--set", "a=1", "b=2", "--no-wait"]) == \
        ["-n", "x", "--set", "a=1", "--set", "b=2", "--no-wait"]
    assert expand_sets(["--set=a=1", "b=2", "NAME"]) == ["--set", "a=1", "--set", "b=2", "NAME"]
    assert expand_sets(["--set"]) == ["--set"]


def test_set_values_typed_as_yaml_1_2() -> None:
    assert typed("on") == "on" and typed("yes") == "yes" and typed("off") == "off"
    assert typed("true") is True and typed("null") is None and typed("2") == 2
    assert typed("1.10") == 1.1  # YAML 1.2 (and JSON) make a float of it
    assert typed("[1, 2]") == [1, 2] and typed('{"a": "b"}') == {"a": "b"}
    assert typed("2024-01-01") == "2024-01-01" and typed("0x10") == 16
    body: dict[str, object] = {}
    set_field(body, "environment_variables.MODE", "on")
    assert body == {"environment_variables": {"MODE": "on"}}


def test_unknown_set_field_is_an_error_with_a_suggestion() -> None:
    with pytest.raises(SpecError, match="did you mean 'instance_count'"):
        check_set_key("online_deployment", "instance_cnt")
    with pytest.raises(SpecError, match=r"did you mean 'request_settings\.request_timeout_ms'"):
        check_set_key("online_deployment", "request_settings.request_timeout")
    check_set_key("online_deployment", "environment_variables.ANY_NAME")  # free-form mapping
    check_set_key("online_deployment", "model.path")


def test_unknown_field_in_a_file_warns_with_a_suggestion(tmp_path: Path) -> None:
    doc = parse({"name": "my-ep", "auth_mode": "key", "trafic": {}}, str(tmp_path / "e.yml"), tmp_path)
    assert any("did you mean 'traffic'" in w for w in doc.warnings)


def test_paths_resolve_against_the_caller(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_path("code-custom") == str(tmp_path / "code-custom")
    assert resolve_path("azureml:m:1") == "azureml:m:1"
    sets = command_line_sets("online_deployment", ("code_configuration.code=code-custom", "instance_count=2"))
    assert sets == {"code_configuration.code": str(tmp_path / "code-custom"), "instance_count": "2"}
    assert os.path.isabs(command_line_sets("online_deployment", ("model=./m",))["model"])


def test_tables_have_headers_are_never_cut_and_round_numbers() -> None:
    long = "http://127.0.0.1:8080/endpoints/" + "x" * 200 + "/score"
    text = output.table(["NAME", "URI"], [["a", long]])
    assert text.splitlines()[0].split() == ["NAME", "URI"] and long in text
    assert output.cell(0.123456789) == "0.123" and output.cell(12.3456) == "12.35" and output.cell(3.0) == "3"
    assert output.cell("[/x] [standard]") == "[/x] [standard]"


def test_global_options_before_a_command_are_not_up() -> None:
    assert _has_command(["--home", "X", "endpoint", "list"])
    assert _has_command(["--url=http://h", "endpoint", "list"])
    assert not _has_command(["--home", "X"]) and not _has_command(["--port", "9000"])
    assert _global_end(["--home", "X", "--port", "1"]) == 2


@pytest.mark.parametrize(("args", "said"), [
    (["online-endpoint", "delete", "-n", "my-ep"], "deleting an endpoint deletes its deployments"),
    (["batch-endpoint", "delete", "-n", "my-batch"],
     "deleting a batch endpoint deletes its deployments and cancels its jobs"),
    (["monitor", "delete", "drift"], "deleting a monitor deletes its runs"),
])
def test_a_delete_without_a_terminal_needs_yes(args: list[str], said: str, tmp_path: Path) -> None:
    """Refused before any daemon is asked (none runs here): exit 2, and what --yes would confirm."""
    from click.testing import CliRunner

    from appliance.cli.main import cli

    result = CliRunner().invoke(cli, [*args, "--home", str(tmp_path)], input="")
    assert result.exit_code == 2
    assert f"{said}; pass --yes to confirm" in result.output
