"""ONNX models for the dynamic batching tests (unit and e2e): each with its first dimension the batch
(but `fixed`), and a request body of a given number of rows for each."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "iris-onnx" / "model" / "model.onnx"


def _save(path: Path, nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto],
          outputs: list[onnx.ValueInfoProto], inits: list[onnx.TensorProto] | None = None) -> Path:
    graph = helper.make_graph(nodes, path.stem, inputs, outputs, inits or [])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())
    return path


def tree_classifier(path: Path) -> Path:
    """A random forest on iris (label int64 [?], probabilities float [?, 3]): rows independent, exactly."""
    from skl2onnx import to_onnx
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    x, y = load_iris(return_X_y=True)
    clf = RandomForestClassifier(n_estimators=10, max_depth=4, random_state=0).fit(x.astype(np.float32), y)
    onx = to_onnx(clf, x[:1].astype(np.float32), options={id(clf): {"zipmap": False}}, target_opset=17)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(onx.SerializeToString())
    return path


def mlp(path: Path, features: int = 16, hidden: int = 32) -> Path:
    """x float [batch, features] → two Gemm+Relu layers → y float [batch, 3]."""
    rng = np.random.default_rng(7)
    inits, nodes, prev, width = [], [], "x", features
    for i, out in enumerate((hidden, hidden, 3)):
        inits += [numpy_helper.from_array((rng.normal(size=(width, out)) / np.sqrt(width)).astype(np.float32), f"w{i}"),
                  numpy_helper.from_array(rng.normal(size=(out,)).astype(np.float32), f"b{i}")]
        nodes.append(helper.make_node("Gemm", [prev, f"w{i}", f"b{i}"], [f"g{i}"]))
        if i < 2:
            nodes.append(helper.make_node("Relu", [f"g{i}"], [f"h{i}"]))
        prev, width = (f"h{i}" if i < 2 else f"g{i}"), out
    return _save(path, nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", features])],
                 [helper.make_tensor_value_info("g2", TensorProto.FLOAT, ["batch", 3])], inits)


def row_sums(path: Path) -> Path:
    """x float [?, ?] → its rows' sums [?]: a free trailing dimension, so requests of other widths can't share."""
    axes = numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")
    return _save(path, [helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=0)],
                 [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, None])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])], [axes])


def lookup(path: Path) -> Path:
    """i int64 [?] → the i-th of ten numbers [?]: an index past them fails in onnxruntime, not at input."""
    table = numpy_helper.from_array(np.arange(10, dtype=np.float32) * 1.5, "table")
    return _save(path, [helper.make_node("Gather", ["table", "i"], ["y"])],
                 [helper.make_tensor_value_info("i", TensorProto.INT64, [None])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])], [table])


def fixed(path: Path) -> Path:
    """x float [1, 4] → x + 1: a first dimension that is not a batch."""
    one = numpy_helper.from_array(np.ones((1, 4), dtype=np.float32), "one")
    return _save(path, [helper.make_node("Add", ["x", "one"], ["y"])],
                 [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [one])


def rows(features: int, count: int, seed: int) -> list[list[float]]:
    """`count` rows of `features` numbers, short decimals (as a client sends them)."""
    rng = np.random.default_rng(seed)
    return np.round(rng.uniform(0.1, 7.9, size=(count, features)), 1).tolist()
