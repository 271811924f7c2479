"""The data collector inside the worker (appliance/scoring/collect.py) and the azureml.ai.monitoring
shim (appliance/scoring/monitoring.py), in process."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from appliance.scoring import collect, monitoring


def _rows(folder: Path, collection: str, suffix: str = "parquet") -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for path in sorted(folder.glob(f"collection={collection}/hour=*/*.{suffix}")):
        if suffix == "parquet":
            rows += pq.read_table(path, partitioning=None).to_pylist()
        else:
            rows += [json.loads(line) for line in path.read_text().splitlines()]
    return rows


def test_collections_from_azure_yaml() -> None:
    spec = {"sampling_rate": 0.2, "collections": {
        "model_inputs": {"enabled": "True", "sampling_rate": 0.5}, "model_outputs": {"enabled": True},
        "request": {"enabled": "false"}, "custom": {"enabled": True, "sampling_rate": 7}}}
    assert collect.collections(spec) == {"model_inputs": 0.5, "model_outputs": 0.2, "custom": 1.0}
    assert collect.collections(None) == {} and collect.collections({"collections": {}}) == {}


def test_sampling_is_per_request_and_near_the_rate() -> None:
    ids = [f"{i:08x}-aaaa-4bbb-8ccc-{i:012x}" for i in range(20_000)]
    kept = [i for i in ids if collect.sampled(i, 0.5)]
    assert abs(len(kept) - 10_000) < 300
    assert all(collect.sampled(i, 0.5) == collect.sampled(i.encode(), 0.5) for i in ids[:100])
    assert set(i for i in ids if collect.sampled(i, 0.25)) <= set(kept)  # nested: a lower rate, a subset
    assert not any(collect.sampled(i, 0.0) for i in ids[:100]) and all(collect.sampled(i, 1.0) for i in ids[:100])


class FakeModel:
    _output_names = ["label", "probabilities"]

    def named_values(self, payload: dict[str, object]) -> dict[str, object]:
        return {"features": payload["data"]}

    def feeds(self, values: dict[str, object]) -> dict[str, np.ndarray]:
        return {k: np.asarray(v, dtype=np.float32) for k, v in values.items()}

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        x = feeds["features"]
        return [np.zeros(len(x), np.int64), np.full((len(x), 3), 1 / 3, np.float32)]

    def answer(self, results: list[np.ndarray]) -> object:
        return results[0].tolist()

    def predict(self, payload: dict[str, object]) -> object:
        return self.answer(self.run(self.feeds(self.named_values(payload))))


def test_no_code_inputs_and_outputs_joined_by_request_id(tmp_path: Path) -> None:
    config = collect.Config(tmp_path, {"model_inputs": 1.0, "model_outputs": 1.0})
    collection = collect.no_code(config)
    assert collection is not None
    model = FakeModel()
    assert collection.predict(model, {"data": [[1, 2, 3, 4], [5, 6, 7, 8]]}, b"req-1") == [0, 0]
    assert config.sink.flush()
    inputs, outputs = _rows(tmp_path, "model_inputs"), _rows(tmp_path, "model_outputs")
    assert [r["correlation_id"] for r in inputs] == ["req-1", "req-1"]
    assert inputs[1] == {**inputs[1], "features_0": 5.0, "features_3": 8.0}
    assert set(outputs[0]) == {"correlation_id", "timestamp", "label", "probabilities_0", "probabilities_1",
                               "probabilities_2"}
    assert [r["correlation_id"] for r in outputs] == ["req-1", "req-1"]
    config.close()


def test_nothing_collected_when_disabled(tmp_path: Path) -> None:
    assert collect.no_code(collect.Config(tmp_path, {})) is None
    assert collect.no_code(None) is None
    assert collect.Config.from_environment({}) is None


def test_json_lines_without_pyarrow(tmp_path: Path) -> None:
    sink = collect.Sink(tmp_path, parquet=False)
    sink.add("model_inputs", "r1", 1_700_000_000.0, lambda d: d, {"a": [1, 2], "b": ["x", "y"]})
    assert sink.flush()
    rows = _rows(tmp_path, "model_inputs", "jsonl")
    assert [(r["correlation_id"], r["a"], r["b"]) for r in rows] == [("r1", 1, "x"), ("r1", 2, "y")]
    assert (tmp_path / "collection=model_inputs" / "hour=2023-11-14T22").is_dir()
    sink.close()


def test_shim_collector_as_azure_score_py_uses_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pd = pytest.importorskip("pandas")
    config = collect.Config(tmp_path, {"model_inputs": 1.0, "model_outputs": 1.0})
    monkeypatch.setattr(collect, "_process_config", [config])
    for name in ("azureml.ai.monitoring", "azureml.ai.monitoring.context"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    assert monitoring.install()
    from azureml.ai.monitoring import Collector  # type: ignore[import-not-found]

    inputs, outputs, off = Collector(name="model_inputs"), Collector(name="model_outputs"), Collector(name="other")
    with collect.serving("the-request"):
        context = inputs.collect(pd.DataFrame({"x": [1.5, 2.5], "kind": ["a", "b"]}))
        outputs.collect(pd.DataFrame({"y": [0, 1]}), context)
        off.collect(pd.DataFrame({"z": [1]}))
    assert context.get_id() == "the-request"
    errors: list[Exception] = []
    Collector(name="model_inputs", on_error=errors.append).collect(object())
    assert len(errors) == 1 and isinstance(errors[0], TypeError)
    assert config.sink.flush()
    assert [(r["correlation_id"], r["x"], r["kind"]) for r in _rows(tmp_path, "model_inputs")] == [
        ("the-request", 1.5, "a"), ("the-request", 2.5, "b")]
    assert [r["y"] for r in _rows(tmp_path, "model_outputs")] == [0, 1]
    assert not (tmp_path / "collection=other").exists()
    config.close()


IRIS = Path(__file__).resolve().parents[2] / "examples" / "iris-onnx" / "model" / "model.onnx"


@pytest.fixture(scope="module")
def iris() -> object:
    from appliance.scoring.onnx_model import OnnxModel

    return OnnxModel(IRIS)


def _by_id(rows: list[dict[str, object]]) -> dict[object, list[dict[str, object]]]:
    out: dict[object, list[dict[str, object]]] = {}
    for row in rows:
        out.setdefault(row["correlation_id"], []).append(row)
    return out


def test_an_onnx_model_with_a_fixed_signature_is_copied_as_served_and_read_back_alike(
        tmp_path: Path, iris: object) -> None:
    """The fast lane (bytes appended per request, read back as arrays): one-row and many-row requests
    mixed, each request's rows beside its own id, values exactly the model's."""
    config = collect.Config(tmp_path, {"model_inputs": 1.0, "model_outputs": 1.0})
    collection = collect.no_code(config)
    assert collection is not None
    sent = {b"one": [[5.1, 3.5, 1.4, 0.2]],
            b"three": [[6.0, 2.2, 5.0, 1.5], [4.9, 3.0, 1.4, 0.2], [7.7, 3.8, 6.7, 2.2]],
            b"one-more": [[5.9, 3.0, 5.1, 1.8]]}
    answers = {rid: collection.predict(iris, {"data": rows}, rid) for rid, rows in sent.items()}
    assert collection._exchanges is not None and collection._exchanges.layout  # the fast lane, not the slow way
    assert config.sink.flush()
    inputs, outputs = _by_id(_rows(tmp_path, "model_inputs")), _by_id(_rows(tmp_path, "model_outputs"))
    assert set(inputs) == set(outputs) == {"one", "three", "one-more"}
    for rid, rows in sent.items():
        got = inputs[rid.decode()]
        assert [[r[f"features_{k}"] for k in range(4)] for r in got] == np.asarray(rows, np.float32).tolist()
        label, probabilities = iris.run(iris.feeds({"features": rows}))  # type: ignore[attr-defined]
        assert [r["label"] for r in outputs[rid.decode()]] == label.tolist()
        assert [[r[f"probabilities_{k}"] for k in range(3)] for r in outputs[rid.decode()]] == probabilities.tolist()
    assert answers[b"three"] == iris.predict({"data": sent[b"three"]})  # type: ignore[attr-defined]
    config.close()


def test_different_rates_keep_each_collection_to_its_own_requests(tmp_path: Path, iris: object) -> None:
    config = collect.Config(tmp_path, {"model_inputs": 1.0, "model_outputs": 0.5})
    collection = collect.no_code(config)
    assert collection is not None
    ids = [f"request-{i}".encode() for i in range(400)]
    for rid in ids:
        collection.predict(iris, {"data": [[5.1, 3.5, 1.4, 0.2]]}, rid)
    assert config.sink.flush()
    inputs = {r["correlation_id"] for r in _rows(tmp_path, "model_inputs")}
    outputs = {r["correlation_id"] for r in _rows(tmp_path, "model_outputs")}
    assert inputs == {rid.decode() for rid in ids}
    assert outputs == {rid.decode() for rid in ids if collect.sampled(rid, 0.5)}
    assert 150 < len(outputs) < 250
    config.close()


def test_records_of_two_hours_land_in_two_partitions(tmp_path: Path, iris: object,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    config = collect.Config(tmp_path, {"model_inputs": 1.0})
    collection = collect.no_code(config)
    assert collection is not None
    clock = iter([1_699_999_200.0 - 1, 1_699_999_200.0 + 3600])  # 21:59:59 then 23:00:00 UTC
    monkeypatch.setattr(collect.time, "time", lambda: next(clock))
    collection.predict(iris, {"data": [[5.1, 3.5, 1.4, 0.2]]}, b"late")
    collection.predict(iris, {"data": [[5.1, 3.5, 1.4, 0.2]]}, b"later")
    monkeypatch.undo()
    assert config.sink.flush()
    hours = sorted(p.name for p in (tmp_path / "collection=model_inputs").iterdir())
    assert hours == ["hour=2023-11-14T21", "hour=2023-11-14T23"]
    assert not (tmp_path / "collection=model_outputs").exists()  # not enabled
    config.close()


def test_an_id_that_is_not_utf8_is_kept_readable(tmp_path: Path, iris: object) -> None:
    config = collect.Config(tmp_path, {"model_outputs": 1.0})
    collection = collect.no_code(config)
    assert collection is not None
    collection.predict(iris, {"data": [[5.1, 3.5, 1.4, 0.2]]}, b"caf\xe9")
    assert config.sink.flush()
    assert [r["correlation_id"] for r in _rows(tmp_path, "model_outputs")] == ["caf\ufffd"]
    config.close()


def test_the_fast_lane_writes_json_lines_without_pyarrow(tmp_path: Path, iris: object) -> None:
    config = collect.Config(tmp_path, {"model_inputs": 1.0, "model_outputs": 1.0})
    config._sink = collect.Sink(tmp_path, parquet=False)
    collection = collect.no_code(config)
    assert collection is not None
    collection.predict(iris, {"data": [[5.1, 3.5, 1.4, 0.2], [6.0, 2.2, 5.0, 1.5]]}, b"r1")
    assert config.sink.flush()
    rows = _rows(tmp_path, "model_inputs", "jsonl")
    assert [(r["correlation_id"], r["features_0"]) for r in rows] == [("r1", np.float32(5.1).item()), ("r1", 6.0)]
    assert [r["label"] for r in _rows(tmp_path, "model_outputs", "jsonl")] == [0, 2]
    config.close()
