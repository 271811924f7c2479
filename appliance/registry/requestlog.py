"""The request log's table: batch insert, and the queries behind `endpoint logs`, `metrics` and
`mirror-report`. Only SQL here; the batching writer is `appliance.telemetry.requestlog`.

Rows are plain tuples in `COLUMNS` order (`appliance.telemetry.events.FIELDS`; the
registry does not import telemetry). `at` arrives as a float Unix time and is stored as a naive UTC
TIMESTAMP, like every timestamp in the registry. Rows are stored in `request_rows`, their endpoint,
deployment, instance and key as a number of `request_routes` (migration 4); queries read the
`request_log` view, which has the rows' columns back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from appliance.registry.store import Registry

COLUMNS = ("at", "request_id", "endpoint", "deployment", "instance", "mirrored", "status", "latency_ms",
           "bytes_in", "bytes_out", "key_id", "body_digest")
RouteKey = tuple[str, str, str, str]  # endpoint, deployment, instance, key_id: a row of request_routes

# Measured: 10,000-row batches into this table, file database, DuckDB 2.0, 2 cores, median of 5 runs:
#   executemany                                            1234 µs/row (one run: 12 s)
#   INSERT ... VALUES (?, ...), (?, ...), 1,000 rows each   199 µs/row (all 10,000 in one: 298)
#   INSERT ... SELECT UNNEST(?::T[]), ..., a list a column  3.2 µs/row
#   con.appender(), `at` made a datetime in Python          3.6 µs/row
#   INSERT ... SELECT from a dict of NumPy columns          1.6 µs/row  <- this one
# Migration 4 cut DuckDB's part of that from 1.3 to 0.7 µs a row (7,500-row batches).
_INSERT = ("INSERT INTO request_rows SELECT id, make_timestamp((\"at\" * 1000000)::BIGINT), request_id, route, "
           "mirrored, status, latency_ms, bytes_in, bytes_out, body_digest::UINTEGER FROM request_log_batch")
_BATCH = ("at", "request_id", "route", "mirrored", "status", "latency_ms", "bytes_in", "bytes_out", "body_digest")
SLICE = 1024  # rows converted per hold of the GIL (see `insert`)
SHRINK_TO = 0.75  # of the size cap, what the rows are cut back to once past it


def _columns(rows: Sequence[tuple[Any, ...]], routes: dict[RouteKey, int]) -> list[np.ndarray]:
    """The `_BATCH` columns of `rows`; a route not in `routes` is added with the next number."""
    (at, request_id, endpoint, deployment, instance, mirrored, status, latency_ms, bytes_in, bytes_out, key_id,
     digest) = zip(*rows, strict=True)
    keys = list(zip(endpoint, deployment, instance, key_id, strict=True))
    try:
        route = np.fromiter(map(routes.__getitem__, keys), np.int32, len(keys))
    except KeyError:
        for key in keys:
            routes.setdefault(key, len(routes) + 1)
        route = np.fromiter(map(routes.__getitem__, keys), np.int32, len(keys))
    if digest.count(None) == len(digest):  # no request mirrored: the usual case, and the cheap one
        missing, values = np.ones(len(keys), np.bool_), np.zeros(len(keys), np.int64)
    else:
        digests = np.array(digest, dtype=object)
        # numpy's stubs take no None here, but on an object array it compares elementwise, as wanted
        missing = np.equal(digests, None)  # type: ignore[call-overload]
        values = np.where(missing, 0, digests).astype(np.int64)
    return [np.array(at, np.float64), np.array(request_id, object), route, np.array(mirrored, np.bool_),
            np.array(status, np.int32), np.array(latency_ms, np.float64), np.array(bytes_in, np.int64),
            np.array(bytes_out, np.int64), np.ma.masked_array(values, mask=missing)]


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _cutoff(since_seconds: float) -> datetime:
    return datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=since_seconds)


def _window(since_seconds: float) -> datetime:
    if since_seconds <= 0:
        raise ValueError(f"the window must be positive, not {since_seconds} s")
    return _cutoff(since_seconds)


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


class RequestLogStore:
    """Writes go through one connection of the store's own (the writer thread's), so they never wait
    for the registry's lock; every query opens a fresh cursor (µs), so readers never wait for either."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._writer = registry.cursor()
        self._write_lock = threading.Lock()  # a DuckDB connection is not for two threads at once
        self._database = registry.path
        self._wal = registry.path.with_name(registry.path.name + ".wal")
        self._routes: dict[RouteKey, int] = {  # numbered 1, 2, 3 ... by this store
            (endpoint, deployment, instance, key_id): number for number, endpoint, deployment, instance, key_id
            in self._writer.execute("SELECT * FROM request_routes").fetchall()}
        (self._next_id,), = self._writer.execute("SELECT id FROM request_log_next").fetchall()

    def insert(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Append rows (tuples in `COLUMNS` order; `body_digest` a CRC-32 or None) in one transaction:
        all or none. This store is the tables' only writer: it numbers the rows and the routes."""
        if not rows:
            return
        # Reading the rows' Python objects is the only part of a write that holds the GIL (DuckDB's insert
        # lets it go), so it is done SLICE rows at a time with the GIL let go in between: the event loop
        # waits about a millisecond for it at worst, not the whole batch's conversion (measured, 9,000
        # rows on one core: the event loop's longest wait 5.5 ms in one go, 1.0 ms in slices of 1,000).
        with self._write_lock:
            routes = dict(self._routes)  # and those this batch adds, kept once it is written
            parts: list[list[np.ndarray]] = []
            for start in range(0, len(rows), SLICE):
                parts.append(_columns(rows[start:start + SLICE], routes))
                time.sleep(0)  # lets the GIL go to a thread waiting for it
            batch = {name: (np.ma.concatenate if name == "body_digest" else np.concatenate)(
                [part[i] for part in parts]) for i, name in enumerate(_BATCH)}
            batch["id"] = np.arange(self._next_id, self._next_id + len(rows), dtype=np.int64)
            new_routes = [(number, *key) for key, number in routes.items() if key not in self._routes]
            self._writer.register("request_log_batch", batch)
            try:
                self._writer.execute("BEGIN TRANSACTION")
                try:
                    if new_routes:
                        self._writer.executemany("INSERT INTO request_routes VALUES (?, ?, ?, ?, ?)", new_routes)
                    self._writer.execute(_INSERT)
                    self._writer.execute("UPDATE request_log_next SET id = ?", [self._next_id + len(rows)])
                except BaseException:
                    self._writer.execute("ROLLBACK")
                    raise
                self._writer.execute("COMMIT")
            finally:
                self._writer.unregister("request_log_batch")
            self._routes = routes
            self._next_id += len(rows)

    def prune(self, older_than_seconds: float) -> int:
        """Delete the rows that arrived more than `older_than_seconds` ago; how many went."""
        with self._write_lock:
            (removed,), = self._writer.execute('DELETE FROM request_rows WHERE "at" < ?',
                                              [_cutoff(older_than_seconds)]).fetchall()
        return int(removed)

    def used_bytes(self) -> int:
        """What rows take on disk: the database's blocks in use (the file may be larger by blocks freed
        for reuse) and its write-ahead log, where the latest rows wait for a checkpoint."""
        with self._write_lock:
            return self._used_bytes()

    def _used_bytes(self) -> int:
        (size,), = self._writer.execute("SELECT block_size * used_blocks FROM pragma_database_size() "
                                        "WHERE database_name = current_database()").fetchall()
        return int(size) + _size(self._wal)

    def _file_bytes(self) -> int:
        """The database file and its WAL: µs to read, where the size query takes milliseconds."""
        return _size(self._database) + _size(self._wal)

    def shrink(self, max_bytes: float) -> int:
        """With more than `max_bytes` of database in use, delete the oldest rows, so many that the rest
        take about `SHRINK_TO` of it; how many went. The freed blocks are reused by later rows, so the file
        stops growing (measured: an 8 MiB cap held the file at 11-13 MiB over 2M inserted rows)."""
        if self._file_bytes() <= max_bytes:  # the blocks in use never exceed the files: no query needed
            return 0
        with self._write_lock:
            used = self._used_bytes()
            if used <= max_bytes:
                return 0
            (count, newest), = self._writer.execute("SELECT count(*), max(id) FROM request_rows").fetchall()
            if not count:
                return 0
            keep = int(count * SHRINK_TO * max_bytes / used)
            (removed,), = self._writer.execute("DELETE FROM request_rows WHERE id <= ?", [newest - keep]).fetchall()
            self._writer.execute("CHECKPOINT").fetchall()  # the deleted row groups' blocks are free only after it
        return int(removed)

    def _query(self, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        with self._registry.cursor() as cur:
            return cur.execute(sql, params).fetchall()

    def tail(self, endpoint: str, *, since_seconds: float | None = None, deployment: str | None = None,
             after_id: int = 0, limit: int = 200) -> list[dict[str, Any]]:
        """Rows of `endpoint`, oldest first, each with its `id`.

        With `after_id` 0: the newest `limit` rows. With `after_id` > 0 (following): the first `limit`
        rows after it, so a follower that falls behind catches up instead of skipping rows.
        """
        # The endpoint's routes first, then its rows by their numbers: DuckDB keeps its fast top-N over
        # `request_rows` for a list of numbers, not through the view's join (measured, 2M rows: 1.5 ms
        # against 330 ms).
        route_sql, route_params = "SELECT * FROM request_routes WHERE endpoint = ?", [endpoint]
        if deployment is not None:
            route_sql += " AND deployment = ?"
            route_params.append(deployment)
        where = ["list_contains(?, route)", "id > ?"]
        params: list[Any] = [after_id]
        if since_seconds is not None:
            where.append('"at" >= ?')
            params.append(_cutoff(since_seconds))
        order = "DESC" if after_id == 0 else "ASC"
        row_sql = ('SELECT id, "at", request_id, route, mirrored, status, latency_ms, bytes_in, bytes_out, body_digest '
                   f"FROM request_rows WHERE {' AND '.join(where)} ORDER BY id {order} LIMIT ?")
        with self._registry.cursor() as cur:
            # One snapshot for both: rows of a route new since the first query would be left out while
            # later ones came back, and a follower would move past them.
            cur.execute("BEGIN TRANSACTION")
            try:
                routes = {number: key for number, *key in cur.execute(route_sql, route_params).fetchall()}
                rows = cur.execute(row_sql, [list(routes), *params, limit]).fetchall() if routes else []
            finally:
                cur.execute("COMMIT")
        if after_id == 0:
            rows.reverse()
        out = []
        for row_id, at, request_id, route, mirrored, status, latency_ms, bytes_in, bytes_out, digest in rows:
            endpoint_, deployment_, instance, key_id = routes[route]
            values = (row_id, at, request_id, endpoint_, deployment_, instance, mirrored, status, latency_ms, bytes_in,
                      bytes_out, key_id, "" if digest is None else f"{digest:08x}")
            out.append(dict(zip(("id", *COLUMNS), values, strict=True)))
        return out

    def metrics(self, endpoint: str, since_seconds: float) -> list[dict[str, Any]]:
        """Per deployment (by name; '' for requests refused before one was chosen), over the last
        `since_seconds`, live requests only: `requests`, `requests_per_second` (requests / window),
        `p50_ms`/`p95_ms`/`p99_ms` (quantile_cont of latency_ms), `error_rate` (share with
        status >= 400), `server_error_rate` (status >= 500); and `mirrored`, the mirrored copies the
        deployment answered. Percentiles and rates are None for a deployment with no live request.
        """
        rows = self._query(
            "SELECT deployment, count(*) FILTER (WHERE NOT mirrored), "
            "quantile_cont(latency_ms, [0.5, 0.95, 0.99]) FILTER (WHERE NOT mirrored), "
            "count(*) FILTER (WHERE NOT mirrored AND status >= 400), "
            "count(*) FILTER (WHERE NOT mirrored AND status >= 500), count(*) FILTER (WHERE mirrored) "
            'FROM request_log WHERE endpoint = ? AND "at" >= ? GROUP BY deployment ORDER BY deployment',
            [endpoint, _window(since_seconds)])
        return [{"deployment": name, "requests": n, "requests_per_second": n / since_seconds,
                 "p50_ms": q[0] if q else None, "p95_ms": q[1] if q else None, "p99_ms": q[2] if q else None,
                 "error_rate": _rate(errors, n), "server_error_rate": _rate(server_errors, n), "mirrored": m}
                for name, n, q, errors, server_errors, m in rows]

    def mirror_report(self, endpoint: str, since_seconds: float) -> dict[str, Any]:
        """Mirrored answers of the last `since_seconds`, each against the live answer to the same request.

        A mirrored row's partner is the live row of the same endpoint and `request_id` written just
        before it (the writer puts a copy's row right after its live row; callers may reuse ids).
        Every figure is over the pairs found, except `mirrored` (all mirrored rows in the window) and
        `unpaired` (those without a live partner, e.g. outside the registry's history):

        - `agreed`: pairs whose live and mirror status are both 200 and whose body digests are equal;
          `agreement_rate` = agreed / pairs (None without pairs).
        - `live_errors`, `mirror_errors`: pairs whose live, resp. mirror, status is >= 400 or 0 (no answer).
        - `live_p50_ms`, `live_p95_ms`, `mirror_p50_ms`, `mirror_p95_ms`: latency over the pairs.
        - `mirror_deployments`: the deployment(s) the copies went to, sorted.
        """
        (mirrored, pairs, agreed, live_errors, mirror_errors, live_q, mirror_q, names), = self._query(
            "WITH m AS (SELECT id, request_id, deployment, status, latency_ms, body_digest FROM request_log "
            '           WHERE endpoint = ? AND mirrored AND "at" >= ?), '
            "l AS (SELECT id, request_id, status, latency_ms, body_digest FROM request_log "
            "      WHERE endpoint = ? AND NOT mirrored AND request_id IN (SELECT request_id FROM m)), "
            "p AS (SELECT m.*, l.id IS NOT NULL AS paired, l.status AS l_status, l.latency_ms AS l_latency, "
            "             l.body_digest AS l_digest "
            "      FROM m ASOF LEFT JOIN l ON m.request_id = l.request_id AND m.id > l.id) "
            "SELECT count(*), count(*) FILTER (WHERE paired), "
            "count(*) FILTER (WHERE paired AND status = 200 AND l_status = 200 AND body_digest = l_digest), "
            "count(*) FILTER (WHERE paired AND (l_status >= 400 OR l_status = 0)), "
            "count(*) FILTER (WHERE paired AND (status >= 400 OR status = 0)), "
            "quantile_cont(l_latency, [0.5, 0.95]) FILTER (WHERE paired), "
            "quantile_cont(latency_ms, [0.5, 0.95]) FILTER (WHERE paired), "
            "list(DISTINCT deployment ORDER BY deployment) FROM p",
            [endpoint, _window(since_seconds), endpoint])
        return {"mirrored": mirrored, "pairs": pairs, "agreed": agreed, "agreement_rate": _rate(agreed, pairs),
                "unpaired": mirrored - pairs, "live_errors": live_errors, "mirror_errors": mirror_errors,
                "live_p50_ms": live_q[0] if live_q else None, "live_p95_ms": live_q[1] if live_q else None,
                "mirror_p50_ms": mirror_q[0] if mirror_q else None,
                "mirror_p95_ms": mirror_q[1] if mirror_q else None,
                "mirror_deployments": names or []}
