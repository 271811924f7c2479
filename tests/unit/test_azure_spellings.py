"""Issue 19, points 5-8, their pure parts: enum spellings, the no-effect report, model-file sniffing,
and a Failed deployment's reason."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from appliance.runtime.supervisor import DeploymentRuntime
from appliance.scoring.onnx_model import find_onnx_file, triton_name
from appliance.specs import SpecError, effects, enums, parse

# -- 6: enums as Azure's schema takes them ----------------------------------------------------


@pytest.mark.parametrize(("written", "stored"), [
    ("Key", "key"), ("KEY", "key"), ("key", "key"), ("AMLToken", "aml_token"), ("aml_token", "aml_token"),
    ("AmlToken", "aml_token"), ("AADToken", "aad_token"),
])
def test_auth_mode_in_any_case(tmp_path: Path, written: str, stored: str) -> None:
    doc = parse({"name": "my-ep", "auth_mode": written}, str(tmp_path / "ep.yml"))
    assert doc.spec.auth_mode == stored


def test_nested_and_inline_enums_are_normalised(tmp_path: Path) -> None:
    (tmp_path / "model.pkl").write_bytes(b"\x80\x04N.")
    (tmp_path / "score.py").write_text("def init():\n    pass\n\ndef run(raw):\n    return raw\n")
    body = {"name": "blue", "endpoint_name": "my-ep", "type": "Managed",
            "egress_public_network_access": "Disabled",
            "scale_settings": {"type": "TargetUtilization"},
            "model": {"path": "model.pkl", "type": "CustomModel"},
            "code_configuration": {"code": ".", "scoring_script": "score.py"},
            "environment": {"image": "python:3.11", "os_type": "Linux"}}
    spec = parse(body, str(tmp_path / "blue.yml")).spec
    assert spec.type == "managed" and spec.egress_public_network_access == "disabled"
    assert spec.scale_settings.type == "target_utilization"
    assert spec.model.type == "custom_model" and spec.environment.os_type == "linux"


def test_unknown_enum_value_still_names_the_allowed_ones(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as err:
        parse({"name": "my-ep", "auth_mode": "password"}, str(tmp_path / "ep.yml"))
    assert err.value.field == "auth_mode"
    assert "'password'" in str(err.value) and "'key'" in str(err.value) and "'aml_token'" in str(err.value)


def test_canonical_leaves_ambiguous_and_foreign_values() -> None:
    assert enums.canonical("Linux", ("linux", "windows")) == "linux"
    assert enums.canonical("mac", ("linux", "windows")) == "mac"
    assert enums.canonical(3, ("linux",)) == 3


# -- 7: what has no effect here, said once per document ----------------------------------------


@dataclass
class Doc:
    spec: Any
    source: str


def test_no_effect_fields_listed_once_per_document(tmp_path: Path) -> None:
    (tmp_path / "score.py").write_text("def init():\n    pass\n\ndef run(raw):\n    return raw\n")
    body = {"name": "blue", "endpoint_name": "my-ep", "instance_type": "Standard_DS3_v2",
            "scale_settings": {"type": "default"}, "data_collector": {"collections": {}},
            "egress_public_network_access": "disabled",
            "code_configuration": {"code": ".", "scoring_script": "score.py"}}
    deployment = parse(body, "blue.yml", tmp_path).spec
    endpoint = parse({"name": "my-ep", "auth_mode": "key", "identity": {"type": "system_assigned"}}, "ep.yml").spec
    asked: list[int] = []
    lines = effects.warnings([Doc(endpoint, "ep.yml"), Doc(deployment, "blue.yml")], lambda: asked.append(1) or 0)
    assert lines == [
        "ep.yml: endpoint my-ep: not emulated: identity",
        "blue.yml: deployment my-ep/blue: recorded for export: instance_type, scale_settings; "
        "not emulated: egress_public_network_access",  # data_collector is emulated (scoring/collect.py)
    ]
    assert asked == []  # no GPU SKU: no look for a GPU


def test_defaults_say_nothing(tmp_path: Path) -> None:
    (tmp_path / "score.py").write_text("def init():\n    pass\n\ndef run(raw):\n    return raw\n")
    body = {"name": "blue", "endpoint_name": "my-ep", "egress_public_network_access": "enabled",
            "code_configuration": {"code": ".", "scoring_script": "score.py"}}
    deployment = parse(body, "blue.yml", tmp_path).spec
    assert effects.warnings([Doc(deployment, "blue.yml")], lambda: 0) == []


@pytest.mark.parametrize(("gpus", "says"), [(0, "no GPU was found here"), (2, "2 CUDA device(s) found")])
def test_gpu_sku_says_whether_a_gpu_was_found(tmp_path: Path, gpus: int, says: str) -> None:
    (tmp_path / "score.py").write_text("def init():\n    pass\n\ndef run(raw):\n    return raw\n")
    body = {"name": "blue", "endpoint_name": "my-ep", "instance_type": "STANDARD_NC4AS_T4_V3",
            "code_configuration": {"code": ".", "scoring_script": "score.py"}}
    deployment = parse(body, "blue.yml", tmp_path).spec
    lines = effects.warnings([Doc(deployment, "blue.yml")], lambda: gpus)
    assert len(lines) == 2 and "recorded for export: instance_type" in lines[0]
    assert "STANDARD_NC4AS_T4_V3 is a GPU SKU" in lines[1] and says in lines[1]
    if not gpus:
        assert "runs on the CPU instead" in lines[1]


# -- 5: single files are what their name says; Triton repositories name their models -----------


def test_a_pickle_is_not_onnx(tmp_path: Path) -> None:
    pkl = tmp_path / "model" / "sklearn_regression_model.pkl"
    pkl.parent.mkdir()
    pkl.write_bytes(b"\x80\x04N.")
    for where in (pkl, pkl.parent, tmp_path):
        with pytest.raises(FileNotFoundError):
            find_onnx_file(where)
    onnx = tmp_path / "other" / "Model.ONNX"
    onnx.parent.mkdir()
    onnx.write_bytes(b"x")
    assert find_onnx_file(onnx) == onnx and find_onnx_file(onnx.parent) == onnx


def test_triton_repository_names_its_model_by_folder(tmp_path: Path) -> None:
    model = tmp_path / "models" / "model_1" / "1" / "model.onnx"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"x")
    assert triton_name(tmp_path) == ("model_1", "1")  # the stored artifact: <digest>/models/...
    assert triton_name(tmp_path / "models") == ("model_1", "1")  # `path: ./models/model_1`, stored
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "model.onnx").write_bytes(b"x")
    assert triton_name(flat) is None


# -- 8: a Failed deployment says why -----------------------------------------------------------


@dataclass
class FakeInstance:
    state: str
    error: str | None


def test_failed_instances_are_the_deployments_reason() -> None:
    runtime = DeploymentRuntime.__new__(DeploymentRuntime)
    runtime.error, runtime.updating = None, False
    runtime.instances = [FakeInstance("failed", "worker exited (exit code 3):\nValueError: no model")]
    assert runtime.state == "Failed"
    assert runtime.failure() == "its instance failed: worker exited (exit code 3):\nValueError: no model"
    runtime.instances.append(FakeInstance("failed", "worker exited (exit code 3):\nValueError: no model"))
    assert runtime.failure().startswith("2 instance(s) failed: ") and runtime.failure().count("ValueError") == 1
    runtime.error = "environment build failed: pip"
    assert runtime.failure() == "environment build failed: pip"
    runtime.error, runtime.instances = None, [FakeInstance("ready", None)]
    assert runtime.failure() is None
