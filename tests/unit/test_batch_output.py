"""Azure's append_row output of a batch run(): what each kind of result writes, and what is refused."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from appliance.scoring.batch_output import ResultError, append_row_text, item_count


def test_a_dataframe_writes_its_rows_space_separated_without_header_or_index() -> None:
    frame = pd.DataFrame({"file": ["a.csv", "b c.csv"], "lines": [3, 0]}, index=[7, 9])
    assert item_count(frame) == 2
    assert append_row_text(frame) == 'a.csv 3\n"b c.csv" 0\n'


def test_a_list_writes_a_line_per_element_with_numpy_scalars_as_numpy_1_wrote_them() -> None:
    result = [["a.csv", np.int64(0)], ("b.csv", np.float32(0.1), np.float64(0.25)), {"k": np.bool_(True)}, "text"]
    assert item_count(result) == 4
    assert append_row_text(result) == "['a.csv', 0]\n('b.csv', 0.1, 0.25)\n{'k': True}\ntext\n"
    assert repr(np.int64(0)) == "np.int64(0)"  # outside, numpy's own printing is left as it was


def test_a_numpy_array_or_tuple_writes_a_line_per_element() -> None:
    assert item_count(np.array([1, 2])) == 2
    assert append_row_text(np.array([1.5, 2.0])) == "1.5\n2.0\n"
    assert append_row_text(np.array([[1, 2], [3, 4]])) == "[1 2]\n[3 4]\n"
    assert append_row_text(("x", 1)) == "x\n1\n"
    assert (item_count([]), append_row_text([])) == (0, "")


@pytest.mark.parametrize(("result", "named"), [(None, "run() returned None"),
                                               ({"a": 1}, "run() returned a builtins.dict"),
                                               ("a.csv 1", "run() returned a builtins.str"),
                                               (pd.Series([1]), "run() returned a pandas")])
def test_any_other_result_is_refused_naming_it_and_what_is_allowed(result: object, named: str) -> None:
    with pytest.raises(ResultError) as caught:
        item_count(result)
    assert str(caught.value).startswith(named)
    assert "a list" in str(caught.value) and "a pandas DataFrame" in str(caught.value)
