"""Azure's data collector, inside the worker: sampled model inputs and outputs written as Parquet.

A deployment's `data_collector.collections.<name>.{enabled, sampling_rate}` reaches the worker as
`APPLIANCE_DATA_COLLECTION` (JSON: the deployment's folder under `$APPLIANCE_HOME/data-collector/` and
{collection: rate} for the enabled ones). Per request, one draw decides: a request is collected in a
collection at rate r when the hash of its x-request-id (the correlation id, which the router forwards
and logs) falls under r, so a request's inputs and outputs are sampled together, and a request is in
every collection whose rate is at least that of another it is in.

On the hot path a sampled request only appends a tuple (id, time, the decoded arrays) to a list; a
thread of the sink's turns them into rows and writes one file per collection and hour every
`FLUSH_EVERY` seconds (or `MAX_ROWS` rows): `collection=C/hour=YYYY-MM-DDTHH/part-....parquet`,
written under a temporary name and renamed, so a reader never sees half a file. A worker whose venv
has no pyarrow (a score.py environment that doesn't ask for it) writes JSON lines (`.jsonl`) in the
same layout instead; the reader (appliance.registry.collected) reads both.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ENV = "APPLIANCE_DATA_COLLECTION"
INPUTS, OUTPUTS = "model_inputs", "model_outputs"
FLUSH_EVERY = 2.0  # s
MAX_ROWS = 50_000  # pending rows that start a write before FLUSH_EVERY is up
MAX_PENDING = 1_000_000  # rows held at most; past it, new ones are dropped (and counted)
CORRELATION, TIMESTAMP = "correlation_id", "timestamp"
_SCALE = float(2 ** 64)
log = logging.getLogger("appliance.scoring.collect")

Columns = dict[str, Any]  # name → a list or a 1-D numpy array of the record's values
Record = tuple[str, float, Callable[[Any], Columns], Any]  # correlation id, time, to columns, the data


def draw(request_id: bytes | str) -> float:
    """This request's draw in [0, 1): the same for every collection and every process."""
    raw = request_id.encode() if isinstance(request_id, str) else request_id
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest()) / _SCALE


def sampled(request_id: bytes | str, rate: float) -> bool:
    return rate >= 1.0 or (rate > 0.0 and draw(request_id) < rate)


def _flag(value: Any) -> bool:
    return value.strip().lower() == "true" if isinstance(value, str) else bool(value)


def _rate(value: Any, default: float) -> float:
    try:
        rate = float(value)
    except (TypeError, ValueError):
        return default
    return min(max(rate, 0.0), 1.0)


def collections(data_collector: dict[str, Any] | None) -> dict[str, float]:
    """{collection name: sampling rate} of the enabled collections of a deployment's `data_collector`
    (Azure's shape: `collections.<name>.enabled` ('True' too) and `sampling_rate` 0-1, defaulting to the
    collector's own `sampling_rate`, else 1)."""
    if not isinstance(data_collector, dict):
        return {}
    default = _rate(data_collector.get("sampling_rate", 1.0), 1.0)
    found = data_collector.get("collections") or {}
    if not isinstance(found, dict):
        return {}
    return {str(name): _rate(c.get("sampling_rate", default), default) for name, c in found.items()
            if isinstance(c, dict) and _flag(c.get("enabled", False))}


def has_pyarrow() -> bool:
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        return False
    return True


class Sink:
    """Buffers records per collection; one thread writes them. `add` is all the hot path pays."""

    def __init__(self, folder: Path, *, flush_every: float = FLUSH_EVERY, max_rows: int = MAX_ROWS,
                 parquet: bool | None = None) -> None:
        self.folder = folder
        self.flush_every = flush_every
        self.max_rows = max_rows
        self.parquet = has_pyarrow() if parquet is None else parquet
        self.written = 0  # rows
        self.dropped = 0  # records past MAX_PENDING
        self.failed = 0  # records whose write failed
        self._pending: dict[str, list[Record]] = {}
        self._count = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._closed = False
        self._seq = 0
        self._thread = threading.Thread(target=self._run, name="data-collector", daemon=True)
        self._thread.start()

    def add(self, collection: str, correlation_id: str, at: float, convert: Callable[[Any], Columns],
            data: Any) -> None:
        with self._lock:
            if self._count >= MAX_PENDING:
                self.dropped += 1
                return
            self._pending.setdefault(collection, []).append((correlation_id, at, convert, data))
            self._count += 1
            if self._idle.is_set():  # (clear() takes the event's lock: 3 µs a call, measured)
                self._idle.clear()
            if self._count >= self.max_rows:
                self._wake.set()

    def flush(self, timeout: float = 10.0) -> bool:
        """Write what is pending now; true once it is written."""
        self._wake.set()
        return self._idle.wait(timeout)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._wake.set()
            self._thread.join(10)

    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_every)
            self._wake.clear()
            closing = self._closed
            with self._lock:
                pending, self._pending, self._count = self._pending, {}, 0
            for collection, records in pending.items():
                try:
                    self._write(collection, records)
                except Exception:  # never the request's business; said in the worker's log
                    self.failed += len(records)
                    log.exception("data collection %s: %d record(s) not written", collection, len(records))
            with self._lock:
                if not self._pending:
                    self._idle.set()
            if closing:
                return

    def _write(self, collection: str, records: list[Record]) -> None:
        stacked = _stacked(records)
        if stacked is not None and self.parquet:
            for hour, table in stacked.items():
                self._write_hour(collection, hour, [], table)
            return
        by_hour: dict[str, list[tuple[str, datetime, Columns]]] = {}
        for correlation_id, at, convert, data in records:
            try:
                columns = convert(data)
            except Exception:
                self.failed += 1
                log.exception("data collection %s: a record could not be read", collection)
                continue
            stamp = datetime.fromtimestamp(at, UTC).replace(tzinfo=None)
            by_hour.setdefault(stamp.strftime("%Y-%m-%dT%H"), []).append((correlation_id, stamp, columns))
        for hour, read in by_hour.items():
            self._write_hour(collection, hour, read)

    def _write_hour(self, collection: str, hour: str, read: list[tuple[str, datetime, Columns]],
                    table: dict[str, Any] | None = None) -> None:
        if table is None and self.parquet:
            table = _as_columns(read)
        rows = _as_rows(read) if table is None else []
        count = len(rows) if table is None else len(table[CORRELATION])
        folder = self.folder / f"collection={collection}" / f"hour={hour}"
        folder.mkdir(parents=True, exist_ok=True)
        self._seq += 1
        stem = f"part-{int(time.time() * 1000)}-{os.getpid()}-{self._seq}"
        if self.parquet:
            import pyarrow as pa
            import pyarrow.parquet as pq

            final = folder / f"{stem}.parquet"
            temporary = folder / f".{stem}.parquet.tmp"
            pq.write_table(pa.table(table) if table is not None else pa.Table.from_pylist(rows), temporary)
        else:
            final = folder / f"{stem}.jsonl"
            temporary = folder / f".{stem}.jsonl.tmp"
            with temporary.open("w") as out:
                for row in rows:
                    row[TIMESTAMP] = row[TIMESTAMP].isoformat()
                    out.write(json.dumps(row, default=_plain) + "\n")
        os.replace(temporary, final)
        self.written += count


def _stacked(records: list[Record]) -> dict[str, dict[str, Any]] | None:
    """A no-code deployment's records (each a dict of arrays, one row or a few) as whole columns per hour,
    each input or output stacked once for all records: the usual case, at a fraction of a microsecond a
    record (the writer shares the interpreter with the data plane when the model is served in the daemon).
    None when the records are not all alike."""
    import numpy as np

    if not records or any(convert is not _named_columns or not isinstance(data, dict)
                          for _, _, convert, data in records):
        return None
    first = records[0][3]
    names = list(first)
    try:
        shapes = {name: first[name].shape[1:] for name in names}
        if any(list(data) != names or any(data[n].shape[1:] != shapes[n] for n in names) for *_, data in records):
            return None
    except AttributeError:  # not arrays
        return None
    rows = np.array([len(data[names[0]]) if names else 0 for *_, data in records])
    hours = np.array([int(at // 3600) for _, at, _, _ in records])
    out: dict[str, dict[str, Any]] = {}
    for hour in np.unique(hours):
        chosen = np.flatnonzero(hours == hour)
        picked = [records[i] for i in chosen]
        counts = rows[chosen]
        table: dict[str, Any] = {
            CORRELATION: np.repeat(np.array([cid for cid, *_ in picked], dtype=object), counts),
            TIMESTAMP: np.repeat((np.array([at for _, at, *_ in picked]) * 1e6).astype("datetime64[us]"), counts)}
        for name in names:
            table.update(_columns(name, np.concatenate([data[name] for *_, data in picked])))
        stamp = datetime.fromtimestamp(int(hour) * 3600, UTC)
        out[stamp.strftime("%Y-%m-%dT%H")] = table
    return out


def _as_columns(read: list[tuple[str, datetime, Columns]]) -> dict[str, Any] | None:
    """The records as whole columns (each record's arrays concatenated, its ids and times repeated), when
    they all have the same columns of one length each: a request's values become no Python objects (the
    writer shares the interpreter with the data plane when the model is served in the daemon); None
    otherwise, for the row by row way."""
    import numpy as np

    names = list(read[0][2])
    counts = []
    for _, _, columns in read:
        lengths = {len(v) for v in columns.values()}
        if list(columns) != names or len(lengths) > 1:
            return None
        counts.append(lengths.pop() if lengths else 0)
    out: dict[str, Any] = {CORRELATION: [cid for (cid, _, _), n in zip(read, counts, strict=True) for _ in range(n)],
                           TIMESTAMP: [stamp for (_, stamp, _), n in zip(read, counts, strict=True) for _ in range(n)]}
    for name in names:
        chunks = [columns[name] for _, _, columns in read]
        arrays = all(isinstance(c, np.ndarray) for c in chunks)
        out[name] = np.concatenate(chunks) if arrays else [v for c in chunks for v in _items(c)]
    return out


def _as_rows(read: list[tuple[str, datetime, Columns]]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for correlation_id, stamp, columns in read:
        n = max((len(v) for v in columns.values()), default=0)
        for i in range(n):
            row: dict[str, Any] = {CORRELATION: correlation_id, TIMESTAMP: stamp}
            for name, values in columns.items():
                value: Any = values[i] if i < len(values) else None
                row[name] = value.item() if hasattr(value, "item") else value  # a numpy scalar as Python's
            rows.append(row)
    return rows


def _items(values: Any) -> list[Any]:
    return values.tolist() if hasattr(values, "tolist") else list(values)


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


# -- the request being served, for Collector.collect() inside a score.py's run() -------------------

_current = threading.local()


@contextmanager
def serving(request_id: str | None) -> Iterator[None]:
    """While run() handles this request (run() is called on the thread this is entered on)."""
    _current.id = request_id
    try:
        yield
    finally:
        _current.id = None


def current_request_id() -> str | None:
    return getattr(_current, "id", None)


# -- the process's configuration ---------------------------------------------------------------

class Config:
    def __init__(self, folder: Path, rates: dict[str, float]) -> None:
        self.folder = folder
        self.rates = rates
        self._sink: Sink | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_environment(cls, environ: dict[str, str] | None = None) -> Config | None:
        raw = (environ if environ is not None else os.environ).get(ENV)
        if not raw:
            return None
        try:
            value = json.loads(raw)
            return cls(Path(value["dir"]), {str(k): float(v) for k, v in value["collections"].items()})
        except (ValueError, KeyError, TypeError, AttributeError):
            log.error("%s is not {\"dir\": ..., \"collections\": {...}}: data collection is off", ENV)
            return None

    @property
    def sink(self) -> Sink:
        with self._lock:
            if self._sink is None:
                self._sink = Sink(self.folder)
                atexit.register(self._sink.close)
            return self._sink

    def close(self) -> None:
        if self._sink is not None:
            self._sink.close()


_process_config: list[Config | None] = []


def process_config() -> Config | None:
    """This process's configuration (from its environment, read once)."""
    if not _process_config:
        _process_config.append(Config.from_environment())
    return _process_config[0]


# -- no-code ONNX: every input and output, collected by the worker ---------------------------------

def _columns(prefix: str, value: Any) -> Columns:
    """One column for a 1-D value, `<name>_<k>` for each column of a 2-D one (deeper: flattened per row);
    a value that isn't an array (a classifier's list of {label: probability}) as JSON text."""
    shape = getattr(value, "shape", None)
    if shape is None:
        if isinstance(value, list):
            return {prefix: [json.dumps(v, default=_plain) if isinstance(v, (dict, list)) else v for v in value]}
        return {prefix: [value]}
    if len(shape) == 0:
        return {prefix: [value.item()]}
    if len(shape) == 1:
        return {prefix: value}
    flat = value.reshape(shape[0], -1)
    return {f"{prefix}_{k}": flat[:, k] for k in range(flat.shape[1])}


def _named_columns(named: dict[str, Any]) -> Columns:
    out: Columns = {}
    for name, value in named.items():
        out.update(_columns(name, value))
    return out


class NoCodeCollection:
    """`model_inputs` and `model_outputs` of a no-code ONNX deployment."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.inputs = config.rates.get(INPUTS, 0.0)
        self.outputs = config.rates.get(OUTPUTS, 0.0)

    @property
    def active(self) -> bool:
        return self.inputs > 0 or self.outputs > 0

    def predict(self, model: Any, payload: Any, request_id: bytes | None) -> Any:
        """model.predict(payload), with the feeds and results collected if this request is sampled."""
        rid = request_id.decode(errors="replace") if request_id else str(uuid.uuid4())
        u = draw(rid)
        keep_in, keep_out = u < self.inputs, u < self.outputs
        if not (keep_in or keep_out):
            return model.predict(payload)
        feeds = model.feeds(model.named_values(payload))
        results = model.run(feeds)
        at = time.time()
        sink = self.config.sink
        if keep_in:
            sink.add(INPUTS, rid, at, _named_columns, feeds)
        if keep_out:
            sink.add(OUTPUTS, rid, at, _named_columns, dict(zip(model._output_names, results, strict=True)))
        return model.answer(results)


def no_code(config: Config | None) -> NoCodeCollection | None:
    if config is None:
        return None
    collection = NoCodeCollection(config)
    return collection if collection.active else None
