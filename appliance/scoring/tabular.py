"""No-code ONNX batch scoring of tabular files: what a batch deployment of an ONNX model without a score.py
does with each file of a mini-batch.

A file is read with pyarrow (.csv; .parquet, .pq; .jsonl, .json as JSON Lines) and its columns feed the
model: when every model input is named like a column, each input takes its column ([N], or [N, 1]); else
the model's one 2-D input [N, F] takes the numeric columns in file order, key columns left out. Key columns
(AZUREML_BATCH_KEY_COLUMNS, and every non-numeric column no input takes) are copied beside the predictions:
`file`, the keys, then the outputs (1-D: a column by its name; [N, K]: name_0 .. name_K-1; a ZipMap's
sequence of maps: name_<key>).

The model runs on AZUREML_BATCH_ROWS rows at a time, each a view of one array per input: apart from the
ZipMap case below, no Python work per row, so this keeps up with a plain loop over onnxruntime.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.json as pjson
import pyarrow.parquet as pq

from appliance.scoring import arrow
from appliance.scoring.onnx_model import OnnxModel, TensorSig, find_onnx_file

EXTENSIONS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "json", ".json": "json"}
DEFAULT_ROWS = 65536


def read_table(path: str, keys: list[str]) -> pa.Table:
    suffix = Path(path).suffix.lower()
    kind = EXTENSIONS.get(suffix)
    if kind == "csv":  # key columns as text, so that an id like 007 keeps its zeros
        types = dict.fromkeys(keys, pa.string())
        return pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(column_types=types))
    if kind == "parquet":  # not pq.read_table: its first call imports pyarrow.dataset, 0.18 s of every worker's
        with pq.ParquetFile(path) as file:  # start; one file reads the same without it
            return file.read()
    if kind == "json":
        return pjson.read_json(path)
    what = f"{suffix} files" if suffix else "files without an extension"
    raise ValueError(f"{path}: the ONNX batch driver can't read {what}; it reads {', '.join(EXTENSIONS)}")


def _numeric(kind: pa.DataType) -> bool:
    return bool(pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind))


def _zipmap(sig: TensorSig) -> bool:
    return sig.type.startswith("seq(map(")


class TabularModel:
    def __init__(self, model: OnnxModel, keys: list[str], rows: int) -> None:
        self.model, self.keys, self.rows = model, keys, rows
        unwritable = [o.describe() for o in model.outputs if o.dtype is None and not _zipmap(o)]
        if unwritable:
            raise ValueError(f"{model.path}: outputs of type {', '.join(unwritable)} can't be written as columns")

    @classmethod
    def from_environment(cls, model_dir: Path) -> TabularModel:
        keys = [k.strip() for k in os.environ.get("AZUREML_BATCH_KEY_COLUMNS", "").split(",") if k.strip()]
        rows = os.environ.get("AZUREML_BATCH_ROWS", str(DEFAULT_ROWS))
        if not rows.isdigit() or int(rows) < 1:
            raise ValueError(f"AZUREML_BATCH_ROWS={rows!r}: give a number of rows (1 or more) to run the model on "
                             "at a time")
        model = OnnxModel(find_onnx_file(model_dir))
        model.warm_up()
        return cls(model, keys, int(rows))

    def predict(self, path: str) -> pa.Table:
        """`file`, the key columns and the predictions of one file's rows."""
        table = read_table(path, self.keys)
        feeds, keys = self._feeds(table, path)
        n = table.num_rows
        chunks = [self.model.run({name: value[start:start + self.rows] for name, value in feeds.items()})
                  for start in range(0, n, self.rows)]
        # Names may repeat (a key column `label` beside the output `label`): a table holds both.
        # The file name as a dictionary of one: a million of it costs no more than one.
        name = os.path.basename(path).encode()
        file = pa.DictionaryArray.from_arrays(arrow.numeric(np.zeros(n, np.int32)), pa.Array.from_buffers(
            pa.string(), 1, [None, pa.py_buffer(np.array([0, len(name)], np.int32)), pa.py_buffer(name)]))
        columns: list[tuple[str, Any]] = [("file", file)]
        columns += [(key, table.column(key)) for key in keys]
        for at, sig in enumerate(self.model.outputs if chunks else []):
            values = [chunk[at] for chunk in chunks]
            if _zipmap(sig):
                columns += _columns(sig.name, [_unzip(maps) for maps in values], list(values[0][0]))
                continue
            if values[0].ndim == 0 or sum(len(v) for v in values) != n:
                raise ValueError(f"{path}: output {sig.name!r} has shape {list(values[0].shape)} for "
                                 f"{min(n, self.rows)} rows, not a row per input row")
            columns += _columns(sig.name, values)
        return pa.Table.from_arrays([a for _, a in columns], names=[name for name, _ in columns])

    def _feeds(self, table: pa.Table, path: str) -> tuple[dict[str, np.ndarray], list[str]]:
        """The model's inputs from a file's columns, and the key columns to copy beside the predictions."""
        names = table.column_names
        missing = [k for k in self.keys if k not in names]
        if missing:
            raise ValueError(f"{path}: key column(s) {', '.join(map(repr, missing))} (AZUREML_BATCH_KEY_COLUMNS) "
                             f"not in the file; its columns: {', '.join(names)}")
        inputs = self.model.inputs
        if all(i.name in names for i in inputs):
            feeds = {}
            for sig in inputs:
                if len(sig.shape) not in (1, 2) or (len(sig.shape) == 2 and isinstance(sig.shape[1], int)
                                                    and sig.shape[1] != 1):
                    raise ValueError(f"{path}: input {sig.name!r} ({sig.describe()}) can't take one column")
                value = _values(table.column(sig.name), sig, sig.name, path)
                feeds[sig.name] = value if len(sig.shape) == 1 else value.reshape(-1, 1)
            taken = {i.name for i in inputs}
            keys = [c for c in names if c in self.keys or (c not in taken and not _numeric(table.schema.field(c).type))]
            return feeds, keys
        if len(inputs) != 1 or len(inputs[0].shape) != 2:
            raise ValueError(f"{path}: the model's inputs ({', '.join(f'{i.name}: {i.describe()}' for i in inputs)}) "
                             f"are not all columns of the file ({', '.join(names)}), and it has no one 2-D input "
                             "to take the numeric columns")
        sig = inputs[0]
        keys = [c for c in names if c in self.keys or not _numeric(table.schema.field(c).type)]
        features = [c for c in names if c not in keys]
        width = sig.shape[1]
        if isinstance(width, int) and width != len(features):
            raise ValueError(f"{path}: input {sig.name!r} takes {width} features, but the file has {len(features)} "
                             f"numeric non-key column(s): {', '.join(features) or 'none'} (key columns: "
                             f"{', '.join(keys) or 'none'}; name others in AZUREML_BATCH_KEY_COLUMNS)")
        matrix = np.empty((table.num_rows, len(features)), dtype=sig.dtype)
        for j, name in enumerate(features):
            matrix[:, j] = _values(table.column(name), sig, name, path)
        return {sig.name: matrix}, keys


def _values(column: pa.ChunkedArray, sig: TensorSig, name: str, path: str) -> np.ndarray:
    """A column as numpy values of an input's dtype."""
    if sig.dtype is None:
        raise ValueError(f"{path}: input {sig.name!r} ({sig.type}) can't be fed from a column")
    if column.null_count and not np.issubdtype(sig.dtype, np.floating):
        raise ValueError(f"{path}: column {name!r} has {column.null_count} empty value(s), which input "
                         f"{sig.name!r} ({sig.describe()}) can't take")
    try:
        return _numbers(column).astype(sig.dtype, copy=False)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: column {name!r} ({column.type}) can't be read as input {sig.name!r} "
                         f"({sig.describe()}): {exc}") from None


def _numbers(column: pa.ChunkedArray) -> np.ndarray:
    """A numeric column without nulls read straight from its buffers: pyarrow's own `to_numpy` imports
    pandas the first time (0.17 s of each worker's first file, measured), for nothing here."""
    kind = column.type
    if column.null_count or not (pa.types.is_integer(kind) or pa.types.is_floating(kind)) or \
            pa.types.is_float16(kind):
        return column.to_numpy()
    dtype = np.dtype(f"{'f' if pa.types.is_floating(kind) else 'i' if pa.types.is_signed_integer(kind) else 'u'}"
                     f"{kind.bit_width // 8}")
    parts = [np.frombuffer(chunk.buffers()[1], dtype=dtype, count=len(chunk), offset=chunk.offset * dtype.itemsize)
             for chunk in column.chunks]
    return parts[0] if len(parts) == 1 else np.concatenate(parts) if parts else np.empty(0, dtype)


def _columns(name: str, values: list[np.ndarray], labels: list[Any] | None = None) -> list[tuple[str, Any]]:
    """An output's chunks as columns: 1-D as it is (each chunk's array an Arrow chunk, not copied); [rows, K]
    as K columns `<name>_<k>` (or `<name>_<label>`), at the cost of one transposing copy."""
    if values[0].ndim == 1:
        return [(name, pa.chunked_array([arrow.numeric(v) for v in values]))]
    by_column = [v.reshape(len(v), -1).T.copy() for v in values]
    return [(f"{name}_{label}", pa.chunked_array([arrow.numeric(c[k]) for c in by_column]))
            for k, label in enumerate(range(by_column[0].shape[0]) if labels is None else labels)]


def _unzip(maps: list[dict[Any, float]]) -> np.ndarray:
    """skl2onnx's ZipMap output (a {class: probability} dict per row) as [rows, classes]. Converted, not
    skipped, though it is Python work per row (about a fifth of what onnxruntime spends building those
    dicts, measured on iris): the probabilities are what such a model is for; one exported with
    zipmap=False gives the plain [rows, classes] tensor instead, at no cost."""
    width = len(maps[0])
    flat = np.fromiter(itertools.chain.from_iterable(map(dict.values, maps)), np.float32, len(maps) * width)
    return flat.reshape(len(maps), width)


def write_arrow(tables: list[pa.Table], sink: IO[bytes]) -> None:
    """A part of a Parquet output: Arrow IPC, uncompressed, for the daemon to merge into the one Parquet
    file (measured on 125,000-row parts: Parquet parts cost about 0.1 s each to write and as much again to
    decode at the merge; these, a few milliseconds, read back without a copy). Files whose columns differ
    share a schema (missing columns are null)."""
    table = pa.concat_tables(tables, promote_options="permissive")
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


def write_text(tables: list[pa.Table], sink: IO[bytes]) -> None:
    """Space-separated lines without a header, as pandas' `to_csv(sep=" ", header=False, index=False)`."""
    for table in tables:
        start = sink.tell()
        try:
            pcsv.write_csv(table, sink, pcsv.WriteOptions(include_header=False, delimiter=" ", quoting_style="none"))
        except pa.ArrowInvalid:  # a value holds a space, quote or line break: pyarrow then quotes every string
            sink.seek(start)
            sink.truncate()
            pcsv.write_csv(table, sink, pcsv.WriteOptions(include_header=False, delimiter=" "))
