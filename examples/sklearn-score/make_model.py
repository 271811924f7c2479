"""Train a ridge regression on scikit-learn's diabetes data (10 features) and pickle it with joblib
to model/model.pkl, as Azure's `cli/endpoints/online/model-1` sample does.

Run with the dev extra installed: python examples/sklearn-score/make_model.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import joblib
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge


def make(out: Path) -> Path:
    x, y = load_diabetes(return_X_y=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(Ridge(alpha=0.5).fit(x, y), out)
    return out


if __name__ == "__main__":
    print(make(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "model" / "model.pkl"))
