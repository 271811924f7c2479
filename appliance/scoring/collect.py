"""Azure's data collector, inside the worker: sampled model inputs and outputs written as Parquet.

A deployment's `data_collector.collections.<name>.{enabled, sampling_rate}` reaches the worker as
`APPLIANCE_DATA_COLLECTION` (JSON: the deployment's folder under `$APPLIANCE_HOME/data-collector/` and
{collection: rate} for the enabled ones). Per request, one draw decides: a request is collected in a
collection at rate r when the hash of its x-request-id (the correlation id, which the router forwards
and logs) falls under r, so a request's inputs and outputs are sampled together, and a request is in
every collection whose rate is at least that of another it is in.

On the hot path a sampled request only appends a tuple (id, time, the decoded arrays) to a deque; a
thread of the sink's stacks them into columns and writes one file per collection and hour every
`FLUSH_EVERY` seconds (or `MAX_ROWS` records): `collection=C/hour=YYYY-MM-DDTHH/part-....parquet`,
written under a temporary name and renamed, so a reader never sees half a file. A worker whose venv
has no pyarrow (a score.py environment that doesn't ask for it) writes JSON lines (`.jsonl`) in the
same layout instead; the reader (appliance.registry.collected) reads both.
"""

from __future__ import annotations

import array
import atexit
import functools
import hashlib
import json
import logging
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ENV = "APPLIANCE_DATA_COLLECTION"
INPUTS, OUTPUTS = "model_inputs", "model_outputs"
FLUSH_EVERY = 2.0  # s
MAX_ROWS = 50_000  # pending records that start a write before FLUSH_EVERY is up
MAX_PENDING = 1_000_000  # records held at most per collection; past it, new ones are dropped (and counted)
TICK = 0.25  # s between the writer's looks at what is pending
CORRELATION, TIMESTAMP = "correlation_id", "timestamp"
HOUR = "hour"  # the partition a table of Exchanges.take belongs to (not a column)
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
    """Buffers records per collection; one thread writes them. Appending to a deque is all the hot path
    pays: no lock (a deque's append and popleft are atomic), no event, no check but its length."""

    def __init__(self, folder: Path, *, flush_every: float = FLUSH_EVERY, max_rows: int = MAX_ROWS,
                 parquet: bool | None = None) -> None:
        self.folder = folder
        self.flush_every = flush_every
        self.max_rows = max_rows
        self.parquet = parquet  # None: the writer finds out, pyarrow's import off the caller's thread
        self.written = 0  # rows
        self.dropped = 0  # records past MAX_PENDING
        self.failed = 0  # records whose write failed
        self._queues: dict[str, deque[Record]] = {}
        self._exchanges: list[Exchanges] = []
        self._wake = threading.Event()
        self._cycles = threading.Condition()
        self._begun = self._ended = 0  # writer cycles: flush() waits for one that begins after it is called
        self._closed = False
        self._seq = 0
        self._thread = threading.Thread(target=self._run, name="data-collector", daemon=True)
        self._thread.start()

    def add(self, collection: str, correlation_id: str, at: float, convert: Callable[[Any], Columns],
            data: Any) -> None:
        """A record whose columns `convert(data)` gives, in the writer's thread."""
        queue = self._queues.get(collection)
        if queue is None:
            queue = self._queues.setdefault(collection, deque())
        if len(queue) >= MAX_PENDING:
            self.dropped += 1
            return
        queue.append((correlation_id, at, convert, data))

    def exchanges(self, inputs: list[str], outputs: list[str], layout: Layout, flags: bool) -> Exchanges:
        """The buffer of a no-code model's inputs and outputs (`Exchanges`)."""
        found = Exchanges(inputs, outputs, layout, flags)
        self._exchanges.append(found)
        return found

    def flush(self, timeout: float = 10.0) -> bool:
        """Write what is pending now; true once it is written."""
        with self._cycles:
            wanted = self._begun + 1
            self._wake.set()
            return self._cycles.wait_for(lambda: self._ended >= wanted, timeout)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._wake.set()
            self._thread.join(10)

    def _pending(self) -> int:
        return sum(map(len, self._queues.values())) + sum(e.pending() for e in self._exchanges)

    def _run(self) -> None:
        if self.parquet is None:
            self.parquet = has_pyarrow()
            if self.parquet:
                import appliance.scoring.arrow  # noqa: F401  (its import, 0.1 s, before the first write)
        last = time.monotonic()
        while True:  # a look every tick for MAX_ROWS reached, so that the hot path needn't check it
            woken = self._wake.wait(min(self.flush_every, TICK))
            closing = self._closed
            if not (woken or closing or time.monotonic() - last >= self.flush_every
                    or self._pending() >= self.max_rows):
                continue
            self._wake.clear()
            last = time.monotonic()
            with self._cycles:
                self._begun += 1
            for collection, queue in list(self._queues.items()):
                records = _drain(queue)
                if records:
                    self._guarded(collection, len(records), functools.partial(self._write, collection, records))
            for exchanges in list(self._exchanges):
                if pending := exchanges.pending():  # (and what is added while they are taken)
                    self._guarded(f"{INPUTS} and {OUTPUTS}", pending,
                                  functools.partial(self._write_exchanges, exchanges))
            with self._cycles:
                self._ended += 1
                self._cycles.notify_all()
            if closing:
                return

    def _guarded(self, what: str, records: int, write: Callable[[], None]) -> None:
        try:
            write()
        except Exception:  # never the request's business; said in the worker's log
            self.failed += records
            log.exception("data collection %s: %d record(s) not written", what, records)

    def _write_exchanges(self, exchanges: Exchanges) -> None:
        for collection, hours in (exchanges.take() or {}).items():
            for table in hours:
                hour = table.pop(HOUR)
                if self.parquet:
                    self._write_hour(collection, hour, [], table)
                else:  # the slow way: a record per row
                    stamps = table.pop(TIMESTAMP).astype("datetime64[us]").astype(datetime)
                    ids = table.pop(CORRELATION)
                    read = [(_text(cid), stamp.replace(tzinfo=None), {n: v[i:i + 1] for n, v in table.items()})
                            for i, (cid, stamp) in enumerate(zip(ids, stamps, strict=True))]
                    self._write_hour(collection, hour, read)

    def _write(self, collection: str, records: list[Record]) -> None:
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
                    columns: dict[str, Any] | None = None) -> None:
        """One file of `read` (records the slow way), or of whole `columns` (numpy, ids as bytes)."""
        folder = self.folder / f"collection={collection}" / f"hour={hour}"
        folder.mkdir(parents=True, exist_ok=True)
        self._seq += 1
        stem = f"part-{int(time.time() * 1000)}-{os.getpid()}-{self._seq}"
        if self.parquet:
            import pyarrow as pa
            import pyarrow.parquet as pq

            from appliance.scoring import arrow

            dictionaries = columns is None  # ids are unique and a no-code model's values numbers: a
            if columns is not None:  # dictionary would be tried, found useless and dropped, at twice the cost
                table = arrow.table(columns)
            else:
                whole = _as_columns(read)
                table = pa.table(whole) if whole is not None else pa.Table.from_pylist(_as_rows(read))
            final = folder / f"{stem}.parquet"
            temporary = folder / f".{stem}.parquet.tmp"
            pq.write_table(table, temporary, use_dictionary=dictionaries)
            count = table.num_rows
        else:
            rows = _as_rows(read)
            final = folder / f"{stem}.jsonl"
            temporary = folder / f".{stem}.jsonl.tmp"
            with temporary.open("w") as out:
                for row in rows:
                    row[TIMESTAMP] = row[TIMESTAMP].isoformat()
                    out.write(json.dumps(row, default=_plain) + "\n")
            count = len(rows)
        os.replace(temporary, final)
        self.written += count


def _drain(queue: deque[Any]) -> list[Any]:
    """What the queue holds now (appends meanwhile stay for the next write)."""
    out = []
    for _ in range(len(queue)):
        out.append(queue.popleft())
    return out


Layout = list[tuple[Any, tuple[int, ...]]]  # per array: numpy dtype, trailing shape


class Exchanges:
    """A no-code deployment's model inputs and outputs, copied as requests are served: a record's arrays'
    bytes, one after the other, appended to one buffer; its id, time and row count to flat arrays. A
    request leaves no object behind but its id: records kept alive until the next write cost the data
    plane more than their copy (measured in the daemon: onnxruntime's own run 7 µs slower a request, its
    new arrays no longer in warm memory). One call a request, inputs and outputs together: each step on
    the hot path costs about three times in the daemon what it does alone (its cache is the data plane's).

    Only for a model whose signature fixes the dtype and every dimension but the first of each input and
    output (`layout`, from `fixed_layout`): then a record's length says whether it fits, and the writer
    reads the buffer back as arrays. Others are recorded the slow way (Sink.add)."""

    def __init__(self, inputs: list[str], outputs: list[str], layout: Layout, flags: bool,
                 max_records: int = MAX_PENDING) -> None:
        import numpy as np

        self.inputs, self.outputs, self.layout = inputs, outputs, layout
        self.flags = flags  # a record says which collections keep it (their rates differ); else both do
        self.max_records = max_records
        self.dropped = 0
        self._widths = [int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize for dtype, shape in layout]
        self.row_bytes = sum(self._widths)  # of all the arrays of one row
        self._lock = threading.Lock()  # the thread pool may serve a deployment's requests concurrently
        self._tobytes = np.ndarray.tobytes  # unbound: the cheapest call per array (a lambda costs a third more)
        self._fresh()

    def _fresh(self) -> None:
        self._ids: list[bytes] = []
        self._times = array.array("d")
        self._rows = array.array("q")
        self._kept = bytearray()  # with flags, a record's collections: 1 inputs, 2 outputs
        self._data = bytearray()

    def add(self, rid: bytes, at: float, kept: int, arrays: tuple[Any, ...]) -> bool:
        """The inputs' arrays then the outputs', copied; false when they don't have the inputs' row count
        (an output that isn't a row per input row), which the caller records the slow way."""
        n = len(arrays[0])
        data = b"".join(map(self._tobytes, arrays))
        if len(data) != n * self.row_bytes:
            return False
        lock = self._lock
        lock.acquire()
        if len(self._ids) < self.max_records:
            self._data += data
            self._ids.append(rid)
            self._times.append(at)
            self._rows.append(n)
            if self.flags:
                self._kept.append(kept)
        else:
            self.dropped += 1
        lock.release()
        return True

    def pending(self) -> int:
        return len(self._ids)

    def take(self) -> dict[str, list[Columns]] | None:
        """{collection: [whole columns of an hour]} of what is held now, or None."""
        import numpy as np

        with self._lock:
            if not self._ids:
                return None
            ids, times, rows, kept, data = self._ids, self._times, self._rows, self._kept, self._data
            self._fresh()
        counts = np.frombuffer(rows, np.int64)
        arrays = self._arrays(data, counts)
        records = np.array(ids, dtype=object), np.frombuffer(times, np.float64), counts
        flags = np.frombuffer(bytes(kept), np.uint8) if self.flags else np.full(len(ids), 3, np.uint8)
        split = len(self.inputs)
        return {INPUTS: _hours(*records, flags & 1, self.inputs, arrays[:split]),
                OUTPUTS: _hours(*records, flags & 2, self.outputs, arrays[split:])}

    def _arrays(self, data: bytearray, counts: Any) -> list[Any]:
        """Each array's rows, all records', from the buffer: read in place when every record is one row;
        else record by record (a record of n rows holds each array's n rows in turn)."""
        import numpy as np

        if (counts == 1).all():
            record = np.dtype([(f"a{i}", dtype, shape) for i, (dtype, shape) in enumerate(self.layout)])
            rows = np.frombuffer(data, record)
            return [rows[f"a{i}"] for i in range(len(self.layout))]
        parts: list[list[Any]] = [[] for _ in self.layout]
        start = 0
        for n in counts.tolist():
            for i, ((dtype, shape), width) in enumerate(zip(self.layout, self._widths, strict=True)):
                parts[i].append(np.frombuffer(data, dtype, n * width // np.dtype(dtype).itemsize, start)
                                .reshape(n, *shape))
                start += n * width
        return [np.concatenate(p) for p in parts]


def fixed_layout(model: Any) -> Layout | None:
    """The inputs' then the outputs' (dtype, trailing shape) when the model's signature fixes them all."""
    import numpy as np

    layout = []
    for sig in [*getattr(model, "inputs", ()), *getattr(model, "outputs", ())]:
        trailing = sig.shape[1:]
        if sig.dtype is None or not sig.shape or not all(isinstance(d, int) for d in trailing) or \
                np.dtype(sig.dtype).kind not in "biuf":
            return None
        layout.append((sig.dtype, tuple(trailing)))
    return layout or None


def _hours(record_ids: Any, times: Any, counts: Any, kept: Any, names: list[str], arrays: list[Any]) -> list[Columns]:
    """One collection's kept records (ids an object array of bytes) as whole columns, a table per hour."""
    import numpy as np

    if not kept.any():
        return []
    keep_rows = np.repeat(kept.astype(bool), counts)
    if not (counts == 1).all():
        record_ids, times = np.repeat(record_ids, counts), np.repeat(times, counts)
    columns: Columns = {CORRELATION: record_ids, TIMESTAMP: times}
    for name, values in zip(names, arrays, strict=True):
        columns.update(_columns(name, values))
    if not keep_rows.all():
        columns = {name: values[keep_rows] for name, values in columns.items()}
    stamps = columns[TIMESTAMP]
    hours = (stamps // 3600).astype(np.int64)
    tables = []
    for hour in np.unique(hours):
        chosen = slice(None) if hours[0] == hours[-1] else np.flatnonzero(hours == hour)
        table = {name: values[chosen] for name, values in columns.items()}
        table[TIMESTAMP] = (table[TIMESTAMP] * 1e6).astype("datetime64[us]")
        table[HOUR] = datetime.fromtimestamp(int(hour) * 3600, UTC).strftime("%Y-%m-%dT%H")
        tables.append(table)
    return tables


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


def _any_columns(value: Any) -> Columns:
    """A DataFrame's columns as they are; a Series, an array or a list as `prediction` (`prediction_<k>`
    for each column of a 2-D one); named arrays by name."""
    if hasattr(value, "to_dict") and hasattr(value, "columns"):
        return {str(k): v for k, v in value.to_dict(orient="list").items()}
    if isinstance(value, dict):
        return _named_columns(value)
    import numpy as np

    return _columns("prediction", np.asarray(value.to_numpy() if hasattr(value, "to_numpy") else value))


def _named_columns(named: dict[str, Any]) -> Columns:
    out: Columns = {}
    for name, value in named.items():
        out.update(_columns(name, value))
    return out


class NoCodeCollection:
    """`model_inputs` and `model_outputs` of a no-code ONNX deployment."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.input_rate = config.rates.get(INPUTS, 0.0)
        self.output_rate = config.rates.get(OUTPUTS, 0.0)
        self._draws = any(0.0 < rate < 1.0 for rate in (self.input_rate, self.output_rate))  # else sampling is moot
        self._exchanges: Exchanges | None = None
        self._inputs: list[str] = []
        self._slow = False  # the model's signature leaves a trailing dimension free
        config.sink  # noqa: B018  (started with the deployment: its writer's imports are not a request's)

    @property
    def active(self) -> bool:
        return self.input_rate > 0 or self.output_rate > 0

    def predict(self, model: Any, payload: Any, request_id: bytes | None) -> Any:
        """model.predict(payload), with the feeds and results collected if this request is sampled."""
        rid = request_id or str(uuid.uuid4()).encode()
        u = draw(rid) if self._draws else 0.0
        kept = (u < self.input_rate) | (u < self.output_rate) << 1
        if not kept:
            return model.predict(payload)
        feeds = model.feeds(model.named_values(payload))
        results = model.run(feeds)
        exchanges = self._exchanges or self._open(model, feeds)
        if self._slow or not exchanges.add(rid, time.time(), kept, (*map(feeds.__getitem__, self._inputs), *results)):
            self._slowly(model, rid, kept, feeds, results)
        return model.answer(results)

    def record(self, request_id: bytes | None, inputs: Any, outputs: Any) -> None:
        """A model served another way (MLflow's pyfunc): its input as parsed (a DataFrame, an array, named
        arrays) and its predictions, if this request is sampled; read into columns by the writer."""
        rid = request_id or str(uuid.uuid4()).encode()
        u = draw(rid) if self._draws else 0.0
        self._add(rid, (u < self.input_rate) | (u < self.output_rate) << 1, _any_columns, inputs, outputs)

    def _slowly(self, model: Any, rid: bytes, kept: int, feeds: dict[str, Any], results: list[Any]) -> None:
        self._add(rid, kept, _named_columns, feeds, dict(zip(model._output_names, results, strict=True)))

    def _add(self, rid: bytes, kept: int, convert: Callable[[Any], Columns], inputs: Any, outputs: Any) -> None:
        """The kept collections' records, to be read into columns by the writer (`convert`)."""
        at, sink, cid = time.time(), self.config.sink, _text(rid)
        if kept & 1:
            sink.add(INPUTS, cid, at, convert, inputs)
        if kept & 2:
            sink.add(OUTPUTS, cid, at, convert, outputs)

    def _open(self, model: Any, feeds: dict[str, Any]) -> Exchanges:
        """Named after the model's inputs, in its signature's order, and outputs."""
        layout = fixed_layout(model)
        self._slow = layout is None
        self._inputs = [sig.name for sig in model.inputs] if layout else list(feeds)
        self._exchanges = self.config.sink.exchanges(self._inputs, list(model._output_names), layout or [],
                                                     self.input_rate != self.output_rate)
        return self._exchanges


def _text(rid: bytes) -> str:
    return rid.decode(errors="replace")


def no_code(config: Config | None) -> NoCodeCollection | None:
    if config is None:
        return None
    collection = NoCodeCollection(config)
    return collection if collection.active else None
