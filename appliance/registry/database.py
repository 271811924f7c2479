"""The registry's one DuckDB connection: a re-entrant lock around every statement, and transactions
that nest (the inner joins the outer)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import duckdb

from appliance.registry.sealed import Sealer


class Database:
    _db: duckdb.DuckDBPyConnection
    _sealer: Sealer

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._depth = 0

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All or nothing; nested use joins the outer transaction."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            self._db.execute("BEGIN TRANSACTION")
            self._depth = 1
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            else:
                self._db.execute("COMMIT")
            finally:
                self._depth = 0

    def _all(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, params or []).fetchall()

    def _one(self, sql: str, params: list[Any] | None = None) -> tuple[Any, ...] | None:
        with self._lock:
            return self._db.execute(sql, params or []).fetchone()

    def _aggregate(self, sql: str, params: list[Any] | None = None) -> Any:
        """The value of a one-column aggregate query (count, max): without GROUP BY it always answers one row."""
        row = self._one(sql, params)
        assert row is not None
        return row[0]

    def _exec(self, sql: str, params: list[Any] | None = None) -> None:
        with self._lock:
            self._db.execute(sql, params or [])

