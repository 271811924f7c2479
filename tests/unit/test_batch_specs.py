"""Batch YAML as Azure writes it (both forms), refusals that name what is wrong, and the pure job rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.batch import plan
from appliance.specs import BatchDeploymentSpec, BatchEndpointSpec, DataSpec, SpecError, load_file

SCHEMA = "https://azuremlschemas.azureedge.net/latest"


def write(folder: Path, text: str) -> Path:
    (folder / "code").mkdir(exist_ok=True)
    (folder / "code" / "batch_driver.py").write_text("def init(): pass\ndef run(b): return b\n")
    (folder / "data").mkdir(exist_ok=True)
    path = folder / "doc.yml"
    path.write_text(text)
    return path


def test_model_batch_deployment_with_settings(tmp_path: Path) -> None:
    doc, = load_file(write(tmp_path, f"""\
$schema: {SCHEMA}/modelBatchDeployment.schema.json
endpoint_name: heart-classifier-batch
name: classifier-xgboost-custom
type: model
model: azureml:heart-classifier-mlflow@latest
code_configuration:
  code: code
  scoring_script: batch_driver.py
compute: azureml:batch-cluster
resources:
  instance_count: 2
settings:
  max_concurrency_per_instance: 2
  mini_batch_size: 2
  output_action: append_row
  output_file_name: predictions.csv
  retry_settings:
    max_retries: 3
    timeout: 300
  error_threshold: -1
  logging_level: info
"""))
    spec = doc.spec
    assert doc.kind == "batch_deployment" and doc.warnings == []
    assert isinstance(spec, BatchDeploymentSpec)
    assert (spec.resources.instance_count, spec.settings.max_concurrency_per_instance) == (2, 2)
    assert spec.settings.retry_settings.timeout == 300 and spec.settings.error_threshold == -1
    assert spec.code_configuration and spec.code_configuration.code == str(tmp_path / "code")


def test_legacy_form_puts_the_settings_at_the_root(tmp_path: Path) -> None:
    """Azure's older docs (batchDeployment.schema.json) write mini_batch_size and the rest at the root."""
    doc, = load_file(write(tmp_path, f"""\
$schema: {SCHEMA}/batchDeployment.schema.json
endpoint_name: heart-classifier-batch
name: classifier-xgboost-mlflow
model: azureml:heart-classifier@latest
compute: azureml:cpu-cluster
resources:
  instance_count: 2
max_concurrency_per_instance: 2
mini_batch_size: 2
output_action: summary_only
retry_settings:
  max_retries: 1
  timeout: 30
error_threshold: 5
logging_level: warning
"""))
    settings = doc.spec.settings
    assert doc.warnings == []
    assert (settings.mini_batch_size, settings.output_action, settings.error_threshold) == (2, "summary_only", 5)
    assert settings.retry_settings.max_retries == 1 and settings.logging_level == "warning"


def test_batch_documents_without_schema_and_enum_spellings(tmp_path: Path) -> None:
    doc, = load_file(write(tmp_path, "endpoint_name: ep1\nname: dep\nmodel: azureml:m:1\nsettings:\n"
                                     "  output_action: AppendRow\n  logging_level: INFO\n"))
    assert doc.kind == "batch_deployment"
    assert (doc.spec.settings.output_action, doc.spec.settings.logging_level) == ("append_row", "info")
    endpoint, = load_file(write(tmp_path, f"$schema: {SCHEMA}/batchEndpoint.schema.json\nname: heart-batch\n"))
    assert isinstance(endpoint.spec, BatchEndpointSpec) and endpoint.spec.auth_mode == "aad_token"


@pytest.mark.parametrize(("text", "field", "words"), [
    ("type: pipeline\ncomponent: azureml:hello@latest\n", "type", "pipeline"),
    ("model: azureml:m:1\nsettings:\n  output_action: write_all\n", "settings.output_action", "append_row"),
    ("model: azureml:m:1\nsettings:\n  mini_batch_size: 0\n", "settings.mini_batch_size", ">= 1"),
    ("model: azureml:m:1\nsettings:\n  error_threshold: -2\n", "settings.error_threshold", ">= -1"),
    ("model: azureml:m:1\nsettings:\n  output_file_name: out/p.csv\n", "settings.output_file_name", "file name"),
    ("model: azureml:m:1\nsettings:\n  retry_settings:\n    timeout: 0\n", "settings.retry_settings.timeout", ">= 1"),
])
def test_bad_batch_settings_name_the_field(tmp_path: Path, text: str, field: str, words: str) -> None:
    with pytest.raises(SpecError) as err:
        load_file(write(tmp_path, f"$schema: {SCHEMA}/modelBatchDeployment.schema.json\nendpoint_name: ep1\n"
                                  f"name: dep\n{text}"))
    assert err.value.field == field and words in str(err.value)


def test_data_assets_are_local_files_or_folders(tmp_path: Path) -> None:
    doc, = load_file(write(tmp_path, f"$schema: {SCHEMA}/data.schema.json\nname: heart-data\ntype: uri_folder\n"
                                     "path: data\n"))
    assert isinstance(doc.spec, DataSpec) and doc.spec.path == str(tmp_path / "data")
    for body, words in [("type: uri_file\npath: data\n", "for a folder use type: uri_folder"),
                        ("type: uri_folder\npath: https://x.blob.core.windows.net/d\n", "local file or folder"),
                        ("type: mltable\npath: data\n", "uri_folder")]:
        with pytest.raises(SpecError) as err:
            load_file(write(tmp_path, f"$schema: {SCHEMA}/data.schema.json\nname: d\n{body}"))
        assert words in str(err.value)


def test_mini_batches_split_by_file_count(tmp_path: Path) -> None:
    for name in ("b.csv", "a.csv", ".hidden", "sub/c.csv", ".ipynb_checkpoints/x.csv"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("x\n")
    files = plan.input_files(tmp_path, "uri_folder")
    assert files == [str(tmp_path / n) for n in ("a.csv", "b.csv", "sub/c.csv")]
    assert plan.mini_batches(files, 2) == [files[:2], files[2:]]
    assert plan.worker_count(2, 2, 3) == 3 and plan.worker_count(1, 4, 10) == 4 and plan.worker_count(1, 1, 0) == 1
    assert not plan.over_threshold(100, -1) and plan.over_threshold(1, 0) and not plan.over_threshold(2, 2)
    with pytest.raises(SpecError, match="uri_file"):
        plan.input_files(tmp_path / "a.csv", "uri_folder")
    with pytest.raises(SpecError, match="no file"):
        (tmp_path / "empty").mkdir()
        plan.input_files(tmp_path / "empty", "uri_folder")


def test_cloud_fields_of_batch_documents_are_said_to_be_recorded(tmp_path: Path) -> None:
    from appliance.specs import effects

    docs = load_file(write(tmp_path, f"$schema: {SCHEMA}/modelBatchDeployment.schema.json\nendpoint_name: ep1\n"
                                     "name: dep\nmodel: azureml:m:1\ncompute: azureml:batch-cluster\n"))
    docs += load_file(write(tmp_path, f"$schema: {SCHEMA}/batchEndpoint.schema.json\nname: ep1\n"))
    lines = effects.warnings(docs, lambda: 0)
    assert any("batch deployment ep1/dep: recorded for export: compute" in line for line in lines), lines
    assert any("batch endpoint ep1: not emulated: auth_mode" in line for line in lines), lines


def test_a_stored_online_deployment_is_not_read_as_a_batch_one(tmp_path: Path) -> None:
    """Every field of an online deployment, as `update` writes them back (resources, type null, ...): the
    kind stays online (a regression: hot reload's update was refused as a batch deployment)."""
    import msgspec

    from appliance.specs import OnlineDeploymentSpec, parse

    body = msgspec.to_builtins(OnlineDeploymentSpec(name="blue", endpoint_name="my-ep", model="azureml:m:1",
                                                    resources={"requests": {"cpu": "1"}}))
    assert body["type"] is None and "resources" in body
    assert parse(body, "<update>", tmp_path).kind == "online_deployment"
    batch = msgspec.to_builtins(BatchDeploymentSpec(name="main", endpoint_name="ep1", model="azureml:m:1"))
    assert parse(batch, "<update>", tmp_path).kind == "batch_deployment"


def test_set_reaches_into_a_mapping_field_that_is_not_set_yet() -> None:
    """`update --set data_collector.collections.model_inputs.enabled=true` on a deployment without a
    data_collector: the stored body has `data_collector: null`, which is no refusal but a mapping to fill."""
    from appliance.specs import set_field

    body: dict[str, object] = {"name": "blue", "data_collector": None}
    set_field(body, "data_collector.collections.model_inputs.enabled", "true")
    assert body["data_collector"] == {"collections": {"model_inputs": {"enabled": True}}}
    with pytest.raises(SpecError, match="not a mapping"):
        set_field({"name": "blue"}, "name.first", "x")
