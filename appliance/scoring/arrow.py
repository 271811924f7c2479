"""numpy arrays and Python strings as Arrow arrays over the same memory (or one copy), without pandas.

`pa.array` and `pa.table` would do, but their first call imports pandas (to ask whether the value is a
pandas object): 0.2 s of CPU, paid by a batch worker's first file and by the daemon's first data
collection write, where it took a twentieth of the data plane's second (measured).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

_NUMERIC = {np.dtype(t): pa.from_numpy_dtype(np.dtype(t)) for t in
            ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float32", "float64")}


def numeric(values: np.ndarray) -> pa.Array:
    """A 1-D numeric (or datetime64[us]) array; anything else through `pa.array`."""
    if values.ndim == 1 and values.dtype == np.dtype("datetime64[us]"):
        return pa.Array.from_buffers(pa.timestamp("us"), len(values),
                                     [None, pa.py_buffer(np.ascontiguousarray(values).view(np.int64))])
    kind = _NUMERIC.get(values.dtype)
    if kind is None or values.ndim != 1:  # booleans too: Arrow's are bits
        return pa.array(values)
    return pa.Array.from_buffers(kind, len(values), [None, pa.py_buffer(np.ascontiguousarray(values))])


def strings(values: list[str | bytes]) -> pa.Array:
    """Text, from str or UTF-8 bytes (bytes that aren't UTF-8 are read with replacement characters)."""
    encoded = [v if type(v) is bytes else str(v).encode() for v in values]
    data = b"".join(encoded)
    try:
        data.decode()
    except UnicodeDecodeError:
        return strings([v.decode(errors="replace") if type(v) is bytes else v for v in values])
    large = len(data) >= 2**31  # past what 32-bit offsets reach
    offsets = np.zeros(len(encoded) + 1, np.int64 if large else np.int32)
    np.cumsum(np.fromiter(map(len, encoded), np.int64, len(encoded)), out=offsets[1:])
    return pa.Array.from_buffers(pa.large_string() if large else pa.string(), len(encoded),
                                 [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def table(columns: dict[str, Any]) -> pa.Table:
    """Columns of numpy arrays (numeric, datetime64[us], or objects holding str or bytes) as a table."""
    arrays = []
    for values in columns.values():
        if isinstance(values, np.ndarray) and values.dtype != object:
            arrays.append(numeric(values))
        else:
            arrays.append(strings(list(values)))
    return pa.Table.from_arrays(arrays, names=list(columns))
