"""Train a logistic regression on iris and save it as ONNX (model/model.onnx).

Run with the dev extra installed: python examples/iris-onnx/make_model.py
"""

from __future__ import annotations

import sys
from pathlib import Path

from skl2onnx import to_onnx
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression


def make(out: Path) -> Path:
    x, y = load_iris(return_X_y=True)
    clf = LogisticRegression(max_iter=500).fit(x.astype("float32"), y)
    onx = to_onnx(clf, x[:1].astype("float32"), options={id(clf): {"zipmap": False}},
                  target_opset=17)
    onx.graph.input[0].name = "features"  # a name that says what to send
    for node in onx.graph.node:
        node.input[:] = ["features" if i == "X" else i for i in node.input]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(onx.SerializeToString())
    return out


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "model" / "model.onnx"
    print(make(target))
