"""Loading Azure ML CLI v2 YAML files: kinds, paths, references, warnings, errors and defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.specs import (
    EnvironmentSpec,
    ModelSpec,
    OnlineDeploymentSpec,
    OnlineEndpointSpec,
    Probe,
    RequestSettings,
    SpecError,
    load_file,
)

SCHEMAS = "https://azuremlschemas.azureedge.net/latest"


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    """A folder holding YAML files, a model file and a scoring script, as in a user's project."""
    folder = tmp_path / "conf"
    (folder / "model").mkdir(parents=True)
    (folder / "model" / "model.onnx").write_bytes(b"onnx")
    (folder / "src").mkdir()
    (folder / "src" / "score.py").write_text("def init():\n    pass\n")
    return folder


def write(folder: Path, text: str, name: str = "spec.yml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def load_one(folder: Path, text: str) -> tuple[object, list[str]]:
    docs = load_file(write(folder, text))
    assert len(docs) == 1
    return docs[0].spec, docs[0].warnings


def load_error(folder: Path, text: str) -> SpecError:
    path = write(folder, text)
    with pytest.raises(SpecError) as info:
        load_file(path)
    return info.value


DEPLOYMENT = "name: blue\nendpoint_name: my-ep\nmodel: azureml:iris:1\n"


# -- kinds ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "body", "kind", "cls"),
    [
        ("managedOnlineEndpoint", "name: my-ep\n", "online_endpoint", OnlineEndpointSpec),
        ("managedOnlineDeployment", DEPLOYMENT, "online_deployment", OnlineDeploymentSpec),
        ("kubernetesOnlineDeployment", DEPLOYMENT, "online_deployment", OnlineDeploymentSpec),
        ("model", "name: iris\npath: model/model.onnx\n", "model", ModelSpec),
        ("environment", "name: onnx-env\nimage: python:3.11-slim\n", "environment", EnvironmentSpec),
    ],
)
def test_kind_comes_from_schema(conf: Path, schema: str, body: str, kind: str, cls: type) -> None:
    docs = load_file(write(conf, f"$schema: {SCHEMAS}/{schema}.schema.json\n{body}"))
    assert [d.kind for d in docs] == [kind]
    assert isinstance(docs[0].spec, cls)
    assert docs[0].warnings == []  # $schema itself is not an unknown field


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (DEPLOYMENT, "online_deployment"),
        ("name: my-ep\nauth_mode: key\n", "online_endpoint"),
        ("name: my-ep\ntraffic:\n  blue: 100\n", "online_endpoint"),
        ("name: onnx-env\nimage: python:3.11-slim\n", "environment"),
        ("name: iris\npath: model\n", "model"),
    ],
)
def test_kind_comes_from_fields_without_schema(conf: Path, body: str, kind: str) -> None:
    assert [d.kind for d in load_file(write(conf, body))] == [kind]


def test_unsupported_schema_is_rejected_naming_it(conf: Path) -> None:
    err = load_error(conf, f"$schema: {SCHEMAS}/commandJob.schema.json\nname: x\n")
    assert err.field == "$schema"
    assert "commandJob" in str(err)
    assert "online_deployment" in str(err) and "batch_deployment" in str(err)


def test_document_of_unknown_kind_is_rejected(conf: Path) -> None:
    err = load_error(conf, "foo: 1\n")
    assert "$schema" in str(err)
    assert str(conf / "spec.yml") in str(err)


# -- paths ----------------------------------------------------------------------------------


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run from a folder that is not the YAML's, so paths must resolve against the YAML file."""
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


def test_relative_model_path_resolves_against_yaml_folder(conf: Path, elsewhere: Path) -> None:
    spec, _ = load_one(conf, "name: blue\nendpoint_name: my-ep\nmodel:\n  path: ./model/model.onnx\n")
    assert isinstance(spec, OnlineDeploymentSpec)
    assert isinstance(spec.model, ModelSpec)
    assert spec.model.path == str((conf / "model" / "model.onnx").resolve())


def test_yaml_given_by_relative_path_still_resolves_against_its_folder(
        conf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(conf, "name: iris\npath: model\n")
    monkeypatch.chdir(tmp_path)
    [doc] = load_file("conf/spec.yml")
    assert doc.spec.path == str((conf / "model").resolve())


def test_bare_string_model_path_resolves_against_yaml_folder(conf: Path, elsewhere: Path) -> None:
    spec, _ = load_one(conf, "name: blue\nendpoint_name: my-ep\nmodel: model\n")
    assert isinstance(spec, OnlineDeploymentSpec)
    assert spec.model == str((conf / "model").resolve())


def test_code_configuration_code_resolves_against_yaml_folder(conf: Path, elsewhere: Path) -> None:
    spec, _ = load_one(conf, "name: blue\nendpoint_name: my-ep\n"
                             "code_configuration:\n  code: ./src\n  scoring_script: score.py\n")
    assert isinstance(spec, OnlineDeploymentSpec)
    assert spec.code_configuration is not None
    assert spec.code_configuration.code == str((conf / "src").resolve())
    assert spec.code_configuration.scoring_script == "score.py"


def test_missing_scoring_script_is_rejected(conf: Path) -> None:
    err = load_error(conf, "name: blue\nendpoint_name: my-ep\n"
                           "code_configuration:\n  code: ./src\n  scoring_script: nope.py\n")
    assert err.field == "code_configuration.scoring_script"
    assert "nope.py" in str(err)


def test_missing_model_path_is_rejected_naming_model_path(conf: Path) -> None:
    err = load_error(conf, "name: blue\nendpoint_name: my-ep\nmodel:\n  path: ./missing.onnx\n")
    assert err.field == "model.path"
    assert "missing.onnx" in str(err)
    assert str(conf / "spec.yml") in str(err)


def test_missing_bare_model_path_is_rejected_naming_model(conf: Path) -> None:
    err = load_error(conf, "name: blue\nendpoint_name: my-ep\nmodel: ./missing\n")
    assert err.field == "model"
    assert "missing" in str(err)


def test_deployment_needs_model_or_code(conf: Path) -> None:
    err = load_error(conf, "name: blue\nendpoint_name: my-ep\n")
    assert err.field == "model"
    assert "code_configuration" in str(err)


def test_code_only_deployment_is_accepted(conf: Path) -> None:
    spec, _ = load_one(conf, "name: blue\nendpoint_name: my-ep\n"
                             "code_configuration:\n  code: src\n  scoring_script: score.py\n")
    assert isinstance(spec, OnlineDeploymentSpec)
    assert spec.model is None


# -- references -----------------------------------------------------------------------------


@pytest.mark.parametrize("ref", ["azureml:iris:1", "azureml:iris@latest", "azureml:my_model.v2:2024-01"])
def test_model_and_environment_references_are_accepted(conf: Path, ref: str) -> None:
    spec, _ = load_one(conf, f"name: blue\nendpoint_name: my-ep\nmodel: {ref}\nenvironment: {ref}\n")
    assert isinstance(spec, OnlineDeploymentSpec)
    assert spec.model == ref
    assert spec.environment == ref


@pytest.mark.parametrize(
    "ref", ["azureml:iris", "azureml:iris:1:2", "azureml:@latest", "azureml::1", "azureml:ir is:1"])
@pytest.mark.parametrize("field", ["model", "environment"])
def test_malformed_references_are_rejected_naming_the_field(conf: Path, ref: str, field: str) -> None:
    other = "environment: azureml:env:1\n" if field == "model" else "model: azureml:iris:1\n"
    err = load_error(conf, f"name: blue\nendpoint_name: my-ep\n{field}: '{ref}'\n{other}")
    assert err.field == field
    assert str(conf / "spec.yml") in str(err)


@pytest.mark.parametrize("ref", ["azureml:iris:", "azureml:iris:bad version!"])
def test_reference_with_empty_or_invalid_version_is_rejected(conf: Path, ref: str) -> None:
    err = load_error(conf, f"name: blue\nendpoint_name: my-ep\nmodel: '{ref}'\n")
    assert err.field == "model"


def test_environment_that_is_neither_reference_nor_spec_is_rejected(conf: Path) -> None:
    err = load_error(conf, DEPLOYMENT + "environment: my-env\n")
    assert err.field == "environment"
    assert "azureml:<name>:<version>" in str(err)


# -- unknown fields -------------------------------------------------------------------------


def test_unknown_fields_are_warnings_naming_them(conf: Path) -> None:
    spec, warnings = load_one(
        conf, DEPLOYMENT + "weird: 1\nrequest_settings:\n  weird: 2\n  request_timeout_ms: 7000\n"
              "liveness_probe:\n  odd: 3\n")
    assert isinstance(spec, OnlineDeploymentSpec)
    assert spec.request_settings.request_timeout_ms == 7000
    assert len(warnings) == 3
    joined = "\n".join(warnings)
    for name in ("'weird'", "'request_settings.weird'", "'liveness_probe.odd'"):
        assert name in joined
    assert all(str(conf / "spec.yml") in w for w in warnings)


def test_unknown_field_in_inline_model_is_a_warning(conf: Path) -> None:
    _, warnings = load_one(conf, "name: blue\nendpoint_name: my-ep\nmodel:\n  path: model\n  flavor: x\n")
    assert len(warnings) == 1
    assert "'model.flavor'" in warnings[0]


def test_known_fields_give_no_warnings(conf: Path) -> None:
    _, warnings = load_one(conf, DEPLOYMENT + "instance_type: Standard_DS3_v2\ninstance_count: 2\n"
                                              "request_settings:\n  max_queue_wait_ms: 100\n")
    assert warnings == []


# -- invalid values -------------------------------------------------------------------------

ENDPOINT = "name: my-ep\n"


@pytest.mark.parametrize(
    ("text", "field", "shown"),
    [
        pytest.param(DEPLOYMENT + "instance_count: three\n", "instance_count", ["three", "int"],
                     id="instance_count-three"),
        pytest.param(DEPLOYMENT + "instance_count: 0\n", "instance_count", ["0", ">= 1"],
                     id="instance_count-zero"),
        pytest.param(DEPLOYMENT + "request_settings:\n  request_timeout_ms: 180001\n",
                     "request_settings.request_timeout_ms", ["180001", "180000"], id="timeout-over-max"),
        pytest.param(DEPLOYMENT + "request_settings:\n  max_queue_wait_ms: -1\n",
                     "request_settings.max_queue_wait_ms", ["-1", ">= 0"], id="queue-wait-negative"),
        pytest.param(DEPLOYMENT + "readiness_probe:\n  period: 0\n",
                     "readiness_probe.period", ["0", ">= 1"], id="probe-period-zero"),
        pytest.param(ENDPOINT + "traffic:\n  blue: 150\n", "traffic.blue", ["150", "100"],
                     id="traffic-150"),
        pytest.param(ENDPOINT + "auth_mode: foo\n", "auth_mode", ["foo", "key", "aml_token", "aad_token"],
                     id="auth_mode-foo"),
        pytest.param("name: my_ep\nauth_mode: key\n", "name", ["my_ep", "3-32"], id="name-underscore"),
        pytest.param("name: ab\nauth_mode: key\n", "name", ["'ab'", "3-32"], id="name-2-chars"),
        pytest.param(f"name: {'a' * 33}\nauth_mode: key\n", "name", ["a" * 33, "3-32"], id="name-33-chars"),
        pytest.param("name: my-ep-\nauth_mode: key\n", "name", ["my-ep-", "ending with '-'"],
                     id="name-trailing-dash"),
        pytest.param("name: 1ep\nauth_mode: key\n", "name", ["1ep", "starting with a letter"],
                     id="name-leading-digit"),
        pytest.param(ENDPOINT + "traffic:\n  my_dep: 100\n", "traffic.my_dep", ["my_dep"],
                     id="traffic-deployment-name"),
        pytest.param("name: blue\nendpoint_name: my_ep\nmodel: azureml:iris:1\n", "endpoint_name",
                     ["my_ep"], id="deployment-endpoint_name"),
    ],
)
def test_invalid_values_name_file_field_value_and_rule(conf: Path, text: str, field: str,
                                                       shown: list[str]) -> None:
    err = load_error(conf, text)
    assert err.field == field
    message = str(err)
    assert str(conf / "spec.yml") in message
    assert field in message
    for part in shown:
        assert part in message


def test_request_timeout_at_limit_is_accepted(conf: Path) -> None:
    spec, _ = load_one(conf, DEPLOYMENT + "request_settings:\n  request_timeout_ms: 180000\n")
    assert isinstance(spec, OnlineDeploymentSpec)
    assert spec.request_settings.request_timeout_ms == 180_000


@pytest.mark.parametrize("name", ["abc", "a" * 32, "my-ep-2"])
def test_endpoint_names_within_rules_are_accepted(conf: Path, name: str) -> None:
    spec, _ = load_one(conf, f"name: {name}\nauth_mode: key\n")
    assert isinstance(spec, OnlineEndpointSpec)
    assert spec.name == name


def test_numeric_model_version_as_in_azure_examples_is_accepted(conf: Path) -> None:
    spec, _ = load_one(conf, f"$schema: {SCHEMAS}/model.schema.json\nname: iris\nversion: 1\npath: model\n")
    assert isinstance(spec, ModelSpec)
    assert spec.version == "1"


# -- defaults -------------------------------------------------------------------------------


def test_deployment_defaults_match_azure(conf: Path) -> None:
    spec, _ = load_one(conf, DEPLOYMENT)
    assert isinstance(spec, OnlineDeploymentSpec)
    assert spec.instance_count == 1
    assert spec.request_settings == RequestSettings(
        request_timeout_ms=5000, max_concurrent_requests_per_instance=1, max_queue_wait_ms=500)
    for probe in (spec.liveness_probe, spec.readiness_probe):
        assert probe == Probe(initial_delay=10, period=10, timeout=2, success_threshold=1,
                              failure_threshold=30)


def test_partial_settings_keep_other_defaults(conf: Path) -> None:
    spec, _ = load_one(conf, DEPLOYMENT + "request_settings:\n  max_concurrent_requests_per_instance: 4\n"
                                          "liveness_probe:\n  period: 3\n")
    assert isinstance(spec, OnlineDeploymentSpec)
    assert spec.request_settings == RequestSettings(
        request_timeout_ms=5000, max_concurrent_requests_per_instance=4, max_queue_wait_ms=500)
    assert spec.liveness_probe == Probe(period=3)
    assert spec.liveness_probe.failure_threshold == 30
    assert spec.readiness_probe == Probe()


def test_endpoint_defaults_match_azure(conf: Path) -> None:
    spec, _ = load_one(conf, f"$schema: {SCHEMAS}/managedOnlineEndpoint.schema.json\nname: my-ep\n")
    assert isinstance(spec, OnlineEndpointSpec)
    assert spec.auth_mode == "key"
    assert spec.traffic == {}
    assert spec.mirror_traffic == {}


# -- files ----------------------------------------------------------------------------------


def test_multi_document_file_loads_every_document_in_order(conf: Path) -> None:
    docs = load_file(write(conf, "name: my-ep\nauth_mode: key\n---\n---\n" + DEPLOYMENT + "---\n"
                                 "name: green\nendpoint_name: my-ep\nmodel: model\n"))
    assert [d.kind for d in docs] == ["online_endpoint", "online_deployment", "online_deployment"]
    assert [d.spec.name for d in docs] == ["my-ep", "blue", "green"]
    assert docs[2].spec.model == str((conf / "model").resolve())
    assert all(d.source == str(conf / "spec.yml") for d in docs)


def test_error_in_a_later_document_rejects_the_file(conf: Path) -> None:
    err = load_error(conf, "name: my-ep\nauth_mode: key\n---\n" + DEPLOYMENT + "instance_count: -2\n")
    assert err.field == "instance_count"


@pytest.mark.parametrize("text", ["", "# just a comment\n", "---\n"])
def test_empty_file_is_rejected(conf: Path, text: str) -> None:
    err = load_error(conf, text)
    assert "no document" in str(err)
    assert str(conf / "spec.yml") in str(err)


def test_non_yaml_file_is_rejected(conf: Path) -> None:
    err = load_error(conf, "name: [unclosed\n  : :\n")
    assert "not valid YAML" in str(err)
    assert str(conf / "spec.yml") in str(err)


@pytest.mark.parametrize(("text", "got"), [("just some text\n", "str"), ("- a\n- b\n", "list")])
def test_document_that_is_not_a_mapping_is_rejected(conf: Path, text: str, got: str) -> None:
    err = load_error(conf, text)
    assert "mapping" in str(err)
    assert got in str(err)


def test_missing_file_is_rejected_naming_it(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        load_file(tmp_path / "absent.yml")
    assert str(tmp_path / "absent.yml") in str(info.value)
    assert "cannot read" in str(info.value)


# -- hardening: names match their rule exactly, scoring_script stays inside code ---------------


@pytest.mark.parametrize("text", [
    'name: "blue\\n"\nendpoint_name: my-ep\nmodel: azureml:iris:1\n',
    'name: blue\nendpoint_name: "my-ep\\n"\nmodel: azureml:iris:1\n',
    'name: "my-ep\\n"\nauth_mode: key\n',
    'name: my-ep\nauth_mode: key\ntraffic:\n  "blue\\n": 100\n',
])
def test_endpoint_names_with_a_trailing_newline_are_rejected(conf: Path, text: str) -> None:
    err = load_error(conf, text)
    assert "invalid name" in err.message
    assert "\\n'" in err.message  # the value, shown with its newline


@pytest.mark.parametrize(("text", "field"), [
    ('name: "iris\\n"\npath: model\n', "name"),
    ('name: iris\nversion: "1\\n"\npath: model\n', "version"),
    ("name: blue\nendpoint_name: my-ep\nmodel: \"azureml:iris:1\\n\"\n", "model"),
])
def test_asset_names_and_versions_with_a_trailing_newline_are_rejected(conf: Path, text: str, field: str) -> None:
    assert load_error(conf, text).field == field


def test_name_rules_use_the_whole_value() -> None:
    from appliance.specs import names

    for check in (names.check_endpoint_name, names.check_asset_name, names.check_asset_version):
        assert check("blue1") == "blue1"
        for bad in ("blue1\n", "blue1\r\n", "\nblue1"):
            with pytest.raises(SpecError):
                check(bad)


def code_deployment(script: str) -> str:
    return f"name: blue\nendpoint_name: my-ep\ncode_configuration:\n  code: ./src\n  scoring_script: {script}\n"


@pytest.mark.parametrize("script", ["../outside.py", "<absolute>", "sub/../../outside.py"])
def test_scoring_script_outside_code_is_rejected(conf: Path, script: str) -> None:
    (conf / "outside.py").write_text("def init():\n    pass\n")
    script = str(conf / "outside.py") if script == "<absolute>" else script
    (conf / "src" / "sub").mkdir()
    err = load_error(conf, code_deployment(script))
    assert err.field == "code_configuration.scoring_script"
    assert repr(script) in err.message
    assert "inside the code folder" in err.message
    assert err.source == str(conf / "spec.yml")


def test_scoring_script_symlinked_outside_code_is_rejected(conf: Path) -> None:
    (conf / "outside.py").write_text("def init():\n    pass\n")
    (conf / "src" / "score_link.py").symlink_to(conf / "outside.py")
    (conf / "src" / "lib").symlink_to(conf, target_is_directory=True)
    for script in ("score_link.py", "lib/outside.py"):
        err = load_error(conf, code_deployment(script))
        assert err.field == "code_configuration.scoring_script"
        assert repr(script) in err.message


def test_scoring_script_in_a_subfolder_or_linked_inside_code_is_accepted(conf: Path) -> None:
    (conf / "src" / "pkg").mkdir()
    (conf / "src" / "pkg" / "main.py").write_text("")
    (conf / "src" / "link.py").symlink_to(conf / "src" / "pkg" / "main.py")
    for script in ("pkg/main.py", "./pkg/../score.py", "link.py"):
        spec, _ = load_one(conf, code_deployment(script))
        assert isinstance(spec, OnlineDeploymentSpec) and spec.code_configuration is not None
        assert spec.code_configuration.scoring_script == script


# -- data_collector ----------------------------------------------------------------------------


def test_azure_data_collector_is_accepted_as_written(conf: Path) -> None:
    spec, _ = load_one(conf, DEPLOYMENT + "data_collector:\n  rolling_rate: Hour\n  sampling_rate: 0.5\n"
                       "  collections:\n    model_inputs:\n      enabled: 'True'\n"
                       "      data:\n        name: ep_inputs\n"
                       "    model_outputs:\n      enabled: false\n      sampling_rate: 1\n")
    assert isinstance(spec, OnlineDeploymentSpec) and spec.data_collector is not None
    assert spec.data_collector["collections"]["model_inputs"]["enabled"] == "True"


@pytest.mark.parametrize(("collector", "field", "said"), [
    ("  collections:\n    model_inputs:\n      enabled: true\n      sampling_rate: 7\n",
     "data_collector.collections.model_inputs.sampling_rate", "invalid value 7: a sampling rate from 0 to 1"),
    ("  sampling_rate: lots\n", "data_collector.sampling_rate", "invalid value 'lots'"),
    ("  collections:\n    model_inputs:\n      enabled: yes please\n",
     "data_collector.collections.model_inputs.enabled", "true or false"),
    ("  colections: {}\n", "data_collector.colections", "allowed in data_collector: collections, sampling_rate"),
    ("  collections:\n    model_inputs: on\n", "data_collector.collections.model_inputs", "a mapping like"),
    ("  rolling_rate: weekly\n", "data_collector.rolling_rate", "one of minute, hour, day"),
])
def test_a_malformed_data_collector_is_refused_naming_the_field(conf: Path, collector: str, field: str,
                                                                said: str) -> None:
    error = load_error(conf, DEPLOYMENT + "data_collector:\n" + collector)
    assert error.field == field and said in str(error)


@pytest.mark.parametrize("schema", ["$schema: https://azuremlschemas.azureedge.net/latest/schedule.schema.json\n", ""])
def test_a_monitor_schedule_given_to_apply_points_to_monitor_create(conf: Path, schema: str) -> None:
    error = load_error(conf, schema + "name: drift\ntrigger:\n  type: recurrence\n  frequency: day\n  interval: 1\n"
                       "create_monitor:\n  monitoring_target:\n    endpoint_deployment_id: azureml:my-ep:blue\n")
    assert "appliance monitor create -f FILE" in str(error)
