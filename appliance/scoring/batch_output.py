"""What a batch `run(mini_batch)` returned, as Azure's `append_row` output writes it: a pandas DataFrame
as its rows, space-separated, without header or index; a list, tuple or numpy array as one line per
element, `str(element)`. Anything else is refused: Azure counts a mini-batch's items by the result's
length, so a result without one can't be accounted for.

Pure: pandas and numpy are looked up in `sys.modules`, never imported. A result can only be one of their
types if the script imported them already, and a score.py's venv may have neither.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any


class ResultError(TypeError):
    """run() returned something append_row can't write."""


def _is(value: Any, module: str, name: str) -> bool:
    found = sys.modules.get(module)
    return found is not None and isinstance(value, getattr(found, name))


def item_count(result: Any) -> int:
    """How many items a mini-batch's result holds (rows of a DataFrame, elements of a list)."""
    if isinstance(result, list | tuple) or _is(result, "pandas", "DataFrame") or _is(result, "numpy", "ndarray"):
        return len(result)
    shown = "None" if result is None else f"a {type(result).__module__}.{type(result).__qualname__}"
    raise ResultError(f"run() returned {shown}; it must return a list (one output line per element) or a "
                      "pandas DataFrame (one output line per row)")


def append_row_text(result: Any) -> str:
    """The lines `append_row` writes for a result that `item_count` accepted."""
    if _is(result, "pandas", "DataFrame"):
        return str(result.to_csv(sep=" ", header=False, index=False))
    with _numpy_1_scalars():
        return "".join(f"{element}\n" for element in result)


def _numpy_1_scalars() -> contextlib.AbstractContextManager[Any]:
    """numpy 2 writes a scalar inside a list as `np.int64(0)`; Azure's outputs were written under numpy 1,
    as `0`. Its legacy print mode writes them so, nested anywhere (a float32 as `0.1`, not as the
    `0.10000000149011612` that converting it to a Python float would give)."""
    np = sys.modules.get("numpy")
    if np is None or int(np.__version__.split(".")[0]) < 2:
        return contextlib.nullcontext()
    return np.printoptions(legacy="1.25")
