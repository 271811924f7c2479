"""The registry on a real DuckDB file: migrations, models, artifacts, transactions, entities, events."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from conftest import KEY

from appliance.registry import Registry
from appliance.registry.records import ModelRecord
from appliance.registry.requestlog import RequestLogStore
from appliance.registry.store import migrations
from appliance.specs import (
    NotFound,
    OnlineDeploymentSpec,
    OnlineEndpointSpec,
    Probe,
    RequestSettings,
)


def add_model(reg: Registry, src: Path, name: str = "iris", version: str | None = None) -> ModelRecord:
    art = reg.put_artifact(src)
    return reg.add_model(name=name, version=version or reg.next_model_version(name), type="custom_model",
                         framework="onnx", digest=art.digest, signature=None, tags={}, description="")


def stored_digests(home: Path) -> list[Path]:
    return sorted((home / "artifacts" / "sha256").iterdir())


# -- migrations -----------------------------------------------------------------------------


LATEST = migrations()[-1][0]


def test_new_registry_is_migrated(registry: Registry, home: Path) -> None:
    assert registry.schema_version == LATEST
    assert (home / "appliance.duckdb").is_file()
    assert registry.list_models() == []
    assert registry.list_endpoints() == []


def migrations_applied(home: Path) -> list[tuple[object, ...]]:
    with duckdb.connect(str(home / "appliance.duckdb"), read_only=True) as db:
        return db.execute("SELECT version, applied_at FROM schema_migrations ORDER BY version").fetchall()


def test_migration_is_recorded(registry: Registry, home: Path) -> None:
    registry.close()
    applied = migrations_applied(home)
    assert [version for version, _ in applied] == [version for version, _ in migrations()]
    assert all(applied_at is not None for _, applied_at in applied)


def test_reopening_keeps_data_and_does_not_reapply(home: Path, model_dir: Path) -> None:
    first = Registry(home, KEY)
    add_model(first, model_dir)
    first.close()
    applied = migrations_applied(home)

    again = Registry(home, KEY)
    try:
        assert again.schema_version == LATEST
        assert [m.version for m in again.list_models("iris")] == ["1"]
    finally:
        again.close()
    assert migrations_applied(home) == applied


def test_a_request_log_written_before_migrations_3_and_4_keeps_its_rows_ids_and_digests(home: Path) -> None:
    """Migration 3 stores request ids uncompressed; migration 4 keeps each row's endpoint, deployment,
    instance and key as a route number and its digest as a number, behind a view with the old columns."""
    with duckdb.connect(str(home / "appliance.duckdb")) as db:  # a registry as version 2 left it
        db.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMP)")
        for version, sql in migrations()[:2]:
            db.execute(sql)
            db.execute("INSERT INTO schema_migrations VALUES (?, current_timestamp::TIMESTAMP)", [version])
        db.execute("INSERT INTO request_log (\"at\", request_id, endpoint, deployment, instance, mirrored, status, "
                   "latency_ms, bytes_in, bytes_out, key_id, body_digest) SELECT TIMESTAMP '2026-01-01', "
                   "'id-' || i, 'ep', 'blue', 'blue-1', false, 200, 1.5, 10, 20, 'primary', '' FROM range(3) t(i)")
        db.execute("INSERT INTO request_log (\"at\", request_id, endpoint, deployment, instance, mirrored, status, "
                   "latency_ms, bytes_in, bytes_out, key_id, body_digest) VALUES "
                   "(TIMESTAMP '2026-01-02', 'id-1', 'ep', 'green', 'green-1', true, 500, 2.5, 10, 30, 'primary', "
                   "'deadbeef'), "  # a CRC-32; and a BLAKE2b digest of 16 hex digits, from earlier versions
                   "(TIMESTAMP '2026-01-03', 'id-3', 'ep', 'green', 'green-1', true, 200, 2.5, 10, 30, 'primary', "
                   "'0123456789abcdef'), "
                   "(TIMESTAMP '2026-01-04', 'gone', 'ep', 'blue', 'blue-1', false, 200, 1.0, 1, 2, 'primary', '')")
        db.execute("DELETE FROM request_log WHERE request_id = 'gone'")  # the sequence went past it
    reg = Registry(home, KEY)
    try:
        assert reg.schema_version == LATEST
        store = RequestLogStore(reg)
        store.insert([(1.8e9, "id-4", "ep", "blue", "blue-1", False, 200, 1.0, 1, 2, "primary", None),
                      (1.8e9, "id-4", "ep", "shadow", "shadow-1", True, 200, 1.0, 1, 2, "primary", 0xC0FFEE)])
        reg._exec("CHECKPOINT")
        assert reg._all("SELECT id, request_id, deployment, instance, status, body_digest FROM request_log "
                        "ORDER BY id") == [
            (1, "id-0", "blue", "blue-1", 200, ""), (2, "id-1", "blue", "blue-1", 200, ""),
            (3, "id-2", "blue", "blue-1", 200, ""), (4, "id-1", "green", "green-1", 500, "deadbeef"),
            (5, "id-3", "green", "green-1", 200, "89abcdef"),  # the 16 digits' last 8
            (7, "id-4", "blue", "blue-1", 200, ""), (8, "id-4", "shadow", "shadow-1", 200, "00c0ffee")]
        assert reg._all("SELECT deployment, key_id FROM request_routes ORDER BY id") == \
            [("blue", "primary"), ("green", "primary"), ("shadow", "primary")]  # one row per route, not per request
        assert {c for c, in reg._all("SELECT DISTINCT compression FROM pragma_storage_info('request_rows') "
                                     "WHERE column_name = 'request_id' AND segment_type = 'VARCHAR'")} \
            == {"Uncompressed"}
    finally:
        reg.close()


# -- models ---------------------------------------------------------------------------------


def test_versions_auto_increment(registry: Registry, model_dir: Path) -> None:
    assert registry.next_model_version("iris") == "1"
    assert add_model(registry, model_dir).version == "1"
    assert add_model(registry, model_dir).version == "2"
    assert [m.version for m in registry.list_models("iris")] == ["1", "2"]
    assert registry.next_model_version("other") == "1"  # per name


def test_explicit_versions_and_latest_is_highest_number(registry: Registry, model_dir: Path) -> None:
    add_model(registry, model_dir, version="2")
    add_model(registry, model_dir, version="10")
    add_model(registry, model_dir, version="9")
    add_model(registry, model_dir, version="2024-01-a")  # non-numeric: not a candidate for "highest"
    assert registry.get_model("iris").version == "10"
    assert registry.next_model_version("iris") == "11"
    assert registry.get_model("iris", "2024-01-a").version == "2024-01-a"
    assert [m.version for m in registry.list_models("iris")] == ["2", "9", "10", "2024-01-a"]


def test_model_record_round_trips(registry: Registry, model_dir: Path) -> None:
    art = registry.put_artifact(model_dir)
    rec = registry.add_model(name="iris", version="3", type="custom_model", framework="onnx",
                             digest=art.digest, signature={"inputs": [{"name": "x", "shape": [-1, 4]}]},
                             tags={"team": "ml"}, description="iris classifier")
    assert rec == registry.get_model("iris", "3")
    assert rec.ref == "azureml:iris:3"
    assert rec.path_name == "iris-model"
    assert rec.digest == art.digest
    assert rec.signature == {"inputs": [{"name": "x", "shape": [-1, 4]}]}
    assert rec.tags == {"team": "ml"}
    assert rec.description == "iris classifier"


def test_list_models_across_names_is_sorted(registry: Registry, model_dir: Path) -> None:
    add_model(registry, model_dir, name="zeta")
    add_model(registry, model_dir, name="alpha")
    add_model(registry, model_dir, name="alpha")
    assert [(m.name, m.version) for m in registry.list_models()] == [("alpha", "1"), ("alpha", "2"),
                                                                    ("zeta", "1")]


def test_missing_model_messages(registry: Registry, model_dir: Path) -> None:
    with pytest.raises(NotFound) as info:
        registry.get_model("nope")
    assert str(info.value) == "model 'nope' is not registered (see `appliance model list`)"
    assert info.value.status == 404

    add_model(registry, model_dir)
    with pytest.raises(NotFound) as info:
        registry.get_model("iris", "7")
    assert "model 'iris' version '7' is not registered" in str(info.value)
    assert registry.find_model("iris", "7") is None


# -- artifacts ------------------------------------------------------------------------------


def test_same_folder_twice_is_stored_once(registry: Registry, home: Path, model_dir: Path) -> None:
    first = registry.put_artifact(model_dir)
    second = registry.put_artifact(model_dir)
    assert first.created is True
    assert second.created is False
    assert first.digest == second.digest
    assert stored_digests(home) == [home / "artifacts" / "sha256" / first.digest]
    assert [p.name for p in (home / "artifacts").iterdir() if p.name.startswith(".staging")] == []
    assert (first.size, first.files) == (len(b"onnx-bytes") + len("setosa\nversicolor\nvirginica\n"), 2)


def test_folder_name_is_kept_beneath_the_digest(registry: Registry, model_dir: Path) -> None:
    art = registry.put_artifact(model_dir)
    stored = registry.artifacts.path(art.digest) / "iris-model"
    assert (stored / "model.onnx").read_bytes() == b"onnx-bytes"
    assert (stored / "sub" / "labels.txt").read_text() == "setosa\nversicolor\nvirginica\n"
    assert registry.artifact_name(art.digest) == "iris-model"


def test_single_file_is_stored_under_its_name(registry: Registry, model_dir: Path) -> None:
    art = registry.put_artifact(model_dir / "model.onnx")
    assert art.files == 1
    assert (registry.artifacts.path(art.digest) / "model.onnx").read_bytes() == b"onnx-bytes"


def test_identical_copy_elsewhere_has_same_digest(registry: Registry, home: Path, model_dir: Path,
                                                  tmp_path: Path) -> None:
    copy = tmp_path / "other" / "iris-model"
    copy.mkdir(parents=True)
    (copy / "model.onnx").write_bytes(b"onnx-bytes")
    (copy / "sub").mkdir()
    (copy / "sub" / "labels.txt").write_text("setosa\nversicolor\nvirginica\n")
    assert registry.put_artifact(copy).digest == registry.put_artifact(model_dir).digest
    assert len(stored_digests(home)) == 1


def test_different_content_gets_different_digest(registry: Registry, home: Path, model_dir: Path) -> None:
    before = registry.put_artifact(model_dir)
    (model_dir / "model.onnx").write_bytes(b"retrained")
    after = registry.put_artifact(model_dir)
    assert after.digest != before.digest
    assert after.created is True
    assert len(stored_digests(home)) == 2
    # The first version is still there, unchanged.
    assert (registry.artifacts.path(before.digest) / "iris-model" / "model.onnx").read_bytes() == b"onnx-bytes"


def test_artifacts_nothing_refers_to_are_removed(registry: Registry, home: Path, model_dir: Path,
                                                tmp_path: Path) -> None:
    """A model's files stay, and so do those a running instance uses; an orphan (its row and files), files
    without a row, and a half-done put's staging copy go."""
    kept = add_model(registry, model_dir).digest
    code = tmp_path / "code"
    code.mkdir()
    (code / "score.py").write_text("v1")
    running = registry.put_artifact(code).digest
    (code / "score.py").write_text("v2")
    orphan = registry.put_artifact(code).digest
    stray = home / "artifacts" / "sha256" / ("f" * 64)
    stray.mkdir()
    (home / "artifacts" / ".staging-left-by-a-crash").mkdir()

    removed = registry.remove_unused_artifacts(in_use={running})

    assert removed == sorted([orphan, stray.name])
    assert [p.name for p in stored_digests(home)] == sorted([kept, running])
    assert not list((home / "artifacts").glob(".staging-*"))
    with pytest.raises(NotFound):
        registry.artifact_name(orphan)
    assert registry.artifact_name(running) == "code" and registry.get_model("iris", "1").digest == kept


def test_missing_artifact_name_is_not_found(registry: Registry) -> None:
    with pytest.raises(NotFound, match="artifact abc is not stored"):
        registry.artifact_name("abc")


# -- transactions ---------------------------------------------------------------------------


class Boom(Exception):
    pass


def test_exception_in_transaction_leaves_no_model(registry: Registry, model_dir: Path) -> None:
    with pytest.raises(Boom), registry.transaction():
        add_model(registry, model_dir)
        assert registry.find_model("iris", "1") is not None  # visible inside
        raise Boom
    assert registry.find_model("iris") is None
    assert registry.list_models() == []
    assert registry.next_model_version("iris") == "1"


def test_nested_transaction_failure_rolls_back_the_outer(registry: Registry, model_dir: Path) -> None:
    with pytest.raises(Boom), registry.transaction():
        add_model(registry, model_dir, version="1")
        with registry.transaction():
            add_model(registry, model_dir, version="2")
            raise Boom
    assert registry.list_models() == []


def test_committed_transaction_persists(home: Path, model_dir: Path) -> None:
    reg = Registry(home, KEY)
    with reg.transaction():
        add_model(reg, model_dir)
        add_model(reg, model_dir)
    reg.close()
    reg = Registry(home, KEY)
    try:
        assert [m.version for m in reg.list_models()] == ["1", "2"]
    finally:
        reg.close()


def test_registry_usable_after_a_rollback(registry: Registry, model_dir: Path) -> None:
    with pytest.raises(Boom), registry.transaction():
        raise Boom
    assert add_model(registry, model_dir).version == "1"


# -- endpoints and deployments --------------------------------------------------------------


def endpoint(name: str = "my-ep", **kw: object) -> OnlineEndpointSpec:
    return OnlineEndpointSpec(name=name, **kw)  # type: ignore[arg-type]


def deployment(name: str = "blue", endpoint_name: str = "my-ep", **kw: object) -> OnlineDeploymentSpec:
    return OnlineDeploymentSpec(name=name, endpoint_name=endpoint_name, model="azureml:iris:1",
                                **kw)  # type: ignore[arg-type]


def test_endpoint_round_trip(registry: Registry) -> None:
    spec = endpoint(description="iris", tags={"team": "ml"}, auth_mode="aml_token",
                    traffic={"blue": 90, "green": 10}, mirror_traffic={"red": 20})
    rec = registry.put_endpoint(spec, "pk", "sk")
    assert rec.spec == spec
    assert (rec.primary_key, rec.secondary_key) == ("pk", "sk")
    assert registry.get_endpoint("my-ep") == rec
    assert rec.name == "my-ep"


def test_put_endpoint_again_updates_it(registry: Registry) -> None:
    registry.put_endpoint(endpoint(traffic={"blue": 100}), "pk", "sk")
    rec = registry.put_endpoint(endpoint(traffic={"blue": 50, "green": 50}), "pk2", "sk2")
    assert rec.spec.traffic == {"blue": 50, "green": 50}
    assert rec.primary_key == "pk2"
    assert len(registry.list_endpoints()) == 1
    assert rec.updated_at >= rec.created_at


def test_list_endpoints_sorted_by_name(registry: Registry) -> None:
    for name in ("zulu-ep", "alpha-ep", "mike-ep"):
        registry.put_endpoint(endpoint(name), "pk", "sk")
    assert [e.name for e in registry.list_endpoints()] == ["alpha-ep", "mike-ep", "zulu-ep"]


def test_missing_endpoint_is_not_found(registry: Registry) -> None:
    assert registry.find_endpoint("nope") is None
    with pytest.raises(NotFound, match="online endpoint 'nope' does not exist"):
        registry.get_endpoint("nope")


def test_deployment_round_trip_with_nested_settings(registry: Registry) -> None:
    spec = deployment(
        environment="azureml:onnx-env:2", environment_variables={"A": "1"}, instance_count=3,
        request_settings=RequestSettings(request_timeout_ms=9000, max_concurrent_requests_per_instance=4,
                                         max_queue_wait_ms=100),
        liveness_probe=Probe(initial_delay=1, period=2, timeout=3, success_threshold=4, failure_threshold=5),
        readiness_probe=Probe(period=7), runtime="process", watch=True)
    rec = registry.put_deployment(spec, "codedigest")
    got = registry.get_deployment("my-ep", "blue")
    assert got == rec
    assert got.spec == spec
    assert got.spec.request_settings.max_concurrent_requests_per_instance == 4
    assert got.spec.liveness_probe.failure_threshold == 5
    assert got.spec.readiness_probe == Probe(period=7)
    assert got.code_digest == "codedigest"
    assert got.key == ("my-ep", "blue")


def test_put_deployment_again_replaces_spec(registry: Registry) -> None:
    registry.put_deployment(deployment(instance_count=1), None)
    rec = registry.put_deployment(deployment(instance_count=2), "d2")
    assert rec.spec.instance_count == 2
    assert rec.code_digest == "d2"
    assert len(registry.list_deployments("my-ep")) == 1


def test_list_and_delete_deployments(registry: Registry) -> None:
    registry.put_deployment(deployment("green"), None)
    registry.put_deployment(deployment("blue"), None)
    registry.put_deployment(deployment("blue", "other-ep"), None)
    assert [d.key for d in registry.list_deployments("my-ep")] == [("my-ep", "blue"), ("my-ep", "green")]
    assert [d.key for d in registry.list_deployments()] == [
        ("my-ep", "blue"), ("my-ep", "green"), ("other-ep", "blue")]

    registry.delete_deployment("my-ep", "blue")
    assert registry.find_deployment("my-ep", "blue") is None
    assert registry.find_deployment("other-ep", "blue") is not None
    with pytest.raises(NotFound) as info:
        registry.get_deployment("my-ep", "blue")
    assert str(info.value) == "deployment 'blue' does not exist on endpoint 'my-ep' (it has: green)"


def test_deleting_endpoint_deletes_its_deployments(registry: Registry) -> None:
    registry.put_endpoint(endpoint("my-ep"), "pk", "sk")
    registry.put_endpoint(endpoint("other-ep"), "pk", "sk")
    registry.put_deployment(deployment("blue", "my-ep"), None)
    registry.put_deployment(deployment("green", "my-ep"), None)
    registry.put_deployment(deployment("blue", "other-ep"), None)

    registry.delete_endpoint("my-ep")

    assert registry.find_endpoint("my-ep") is None
    assert registry.list_deployments("my-ep") == []
    assert [e.name for e in registry.list_endpoints()] == ["other-ep"]
    assert [d.key for d in registry.list_deployments()] == [("other-ep", "blue")]


# -- events ---------------------------------------------------------------------------------


def test_events_recorded_newest_first_with_detail(registry: Registry) -> None:
    registry.add_event("endpoint.created", "my-ep", auth_mode="key")
    registry.add_event("traffic.changed", "my-ep", traffic={"blue": 100})
    events = registry.list_events()
    assert [(e.kind, e.subject) for e in events] == [("traffic.changed", "my-ep"),
                                                     ("endpoint.created", "my-ep")]
    assert events[0].detail == {"traffic": {"blue": 100}}
    assert events[1].detail == {"auth_mode": "key"}
    assert events[0].id > events[1].id


def test_events_filtered_by_subject_include_children(registry: Registry) -> None:
    registry.add_event("endpoint.created", "ep")
    registry.add_event("deployment.created", "ep/blue")
    registry.add_event("endpoint.created", "ep2")
    registry.add_event("deployment.created", "ep2/blue")
    registry.add_event("endpoint.created", "other")
    assert [e.subject for e in registry.list_events("ep")] == ["ep/blue", "ep"]
    assert [e.subject for e in registry.list_events("ep/blue")] == ["ep/blue"]
    assert len(registry.list_events()) == 5


def test_events_limit_keeps_the_newest(registry: Registry) -> None:
    for i in range(5):
        registry.add_event("x", "ep", n=i)
    assert [e.detail["n"] for e in registry.list_events(limit=2)] == [4, 3]
