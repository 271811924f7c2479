"""Scheduled model monitors, when they run next, and their last runs (the newest MONITOR_RUNS each)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import msgspec

from appliance.registry.database import Database
from appliance.registry.records import MonitorRecord, MonitorRun
from appliance.specs import NotFound

MONITOR_RUNS = 100  # runs kept per monitor


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class MonitorTables(Database):
    _MONITOR_COLS = "name, endpoint_name, deployment_name, spec, created_at, updated_at, last_run_at, next_run_at"

    @staticmethod
    def _monitor(row: tuple[Any, ...]) -> MonitorRecord:
        name, endpoint, deployment, spec, created, updated, last, next_ = row
        return MonitorRecord(name=name, endpoint_name=endpoint, deployment_name=deployment, spec=json.loads(spec),
                             created_at=created, updated_at=updated, last_run_at=last, next_run_at=next_)

    def put_monitor(self, spec: dict[str, Any], next_run_at: datetime | None) -> MonitorRecord:
        """Creates or replaces the monitor `spec["name"]` (its runs stay: the same monitor, changed)."""
        self._exec("INSERT INTO monitors (name, endpoint_name, deployment_name, spec, next_run_at, updated_at) "
                   "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET endpoint_name = excluded.endpoint_name, "
                   "deployment_name = excluded.deployment_name, spec = excluded.spec, "
                   "next_run_at = excluded.next_run_at, updated_at = excluded.updated_at",
                   [spec["name"], spec["endpoint"], spec["deployment"], msgspec.json.encode(spec).decode(),
                    next_run_at, _now()])
        return self.get_monitor(spec["name"])

    def find_monitor(self, name: str) -> MonitorRecord | None:
        row = self._one(f"SELECT {self._MONITOR_COLS} FROM monitors WHERE name = ?", [name])
        return self._monitor(row) if row else None

    def get_monitor(self, name: str) -> MonitorRecord:
        found = self.find_monitor(name)
        if found is None:
            raise NotFound(f"monitor {name!r} does not exist (see `appliance monitor list`)", field="name")
        return found

    def list_monitors(self, endpoint: str | None = None) -> list[MonitorRecord]:
        sql = f"SELECT {self._MONITOR_COLS} FROM monitors"
        sql += " WHERE endpoint_name = ?" if endpoint else ""
        return [self._monitor(r) for r in self._all(sql + " ORDER BY name", [endpoint] if endpoint else [])]

    def due_monitors(self, now: datetime) -> list[MonitorRecord]:
        """Monitors whose next run is at `now` or before, the most overdue first."""
        return [self._monitor(r) for r in self._all(
            f"SELECT {self._MONITOR_COLS} FROM monitors WHERE next_run_at <= ? ORDER BY next_run_at, name", [now])]

    def next_monitor_run(self) -> datetime | None:
        return self._aggregate("SELECT min(next_run_at) FROM monitors")

    def delete_monitor(self, name: str) -> None:
        with self.transaction():
            self._exec("DELETE FROM monitor_runs WHERE monitor = ?", [name])
            self._exec("DELETE FROM monitors WHERE name = ?", [name])

    def add_monitor_run(self, name: str, at: datetime, result: dict[str, Any],
                        next_run_at: datetime | None) -> MonitorRun | None:
        """Records a run and when the monitor runs next; the oldest runs past MONITOR_RUNS go. None if the
        monitor was deleted meanwhile (nothing recorded)."""
        with self.transaction():
            if self.find_monitor(name) is None:
                return None
            row = self._one('INSERT INTO monitor_runs (monitor, "at", status, result) VALUES (?, ?, ?, ?) '
                            "RETURNING id", [name, at, result["status"], msgspec.json.encode(result).decode()])
            assert row is not None
            self._exec("UPDATE monitors SET last_run_at = ?, next_run_at = ? WHERE name = ?", [at, next_run_at, name])
            self._exec("DELETE FROM monitor_runs WHERE monitor = ? AND id <= (SELECT id FROM monitor_runs "
                       "WHERE monitor = ? ORDER BY id DESC LIMIT 1 OFFSET ?)", [name, name, MONITOR_RUNS])
        return MonitorRun(id=row[0], monitor=name, at=at, status=result["status"], result=result)

    def list_monitor_runs(self, name: str, limit: int = MONITOR_RUNS) -> list[MonitorRun]:
        """The monitor's runs, newest first."""
        rows = self._all('SELECT id, monitor, "at", status, result FROM monitor_runs WHERE monitor = ? '
                         "ORDER BY id DESC LIMIT ?", [name, limit])
        return [MonitorRun(id=i, monitor=m, at=at, status=s, result=json.loads(r)) for i, m, at, s, r in rows]
