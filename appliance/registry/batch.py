"""Batch endpoints and deployments, data assets, and jobs with their ledger of mini-batches."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from typing import Any

import msgspec

from appliance.registry.database import Database
from appliance.registry.records import (
    BatchDeploymentRecord,
    BatchEndpointRecord,
    DataRecord,
    JobRecord,
    MiniBatch,
)
from appliance.specs import BatchDeploymentSpec, BatchEndpointSpec, NotFound


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _json(value: Any) -> str:
    return msgspec.json.encode(value).decode()


class BatchTables(Database):
    # -- batch endpoints --------------------------------------------------------------------

    _BATCH_ENDPOINT_COLS = "name, id, spec, primary_key, secondary_key, created_at, updated_at"

    def _batch_endpoint(self, row: tuple[Any, ...]) -> BatchEndpointRecord:
        name, id_, spec, primary, secondary, created, updated = row
        return BatchEndpointRecord(spec=msgspec.json.decode(spec, type=BatchEndpointSpec), id=id_,
                                   primary_key=self._sealer.open(primary, f"batch endpoint {name}/primary_key"),
                                   secondary_key=self._sealer.open(secondary, f"batch endpoint {name}/secondary_key"),
                                   created_at=created, updated_at=updated)

    def find_batch_endpoint(self, name: str) -> BatchEndpointRecord | None:
        row = self._one(f"SELECT {self._BATCH_ENDPOINT_COLS} FROM batch_endpoints WHERE name = ?", [name])
        return self._batch_endpoint(row) if row else None

    def get_batch_endpoint(self, name: str) -> BatchEndpointRecord:
        found = self.find_batch_endpoint(name)
        if found is None:
            raise NotFound(f"batch endpoint {name!r} does not exist (see `appliance batch-endpoint list`)",
                           field="endpoint")
        return found

    def list_batch_endpoints(self) -> list[BatchEndpointRecord]:
        return [self._batch_endpoint(r) for r in self._all(
            f"SELECT {self._BATCH_ENDPOINT_COLS} FROM batch_endpoints ORDER BY name")]

    def put_batch_endpoint(self, spec: BatchEndpointSpec, primary_key: str, secondary_key: str) -> BatchEndpointRecord:
        """Creates (with a new random id) or updates (keeping its id) a batch endpoint; keys stored sealed."""
        name = spec.name
        self._exec("INSERT INTO batch_endpoints (name, id, spec, primary_key, secondary_key, updated_at) "
                   "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, "
                   "primary_key = excluded.primary_key, secondary_key = excluded.secondary_key, "
                   "updated_at = excluded.updated_at",
                   [name, secrets.token_hex(16), _json(spec),
                    self._sealer.seal(primary_key, f"batch endpoint {name}/primary_key"),
                    self._sealer.seal(secondary_key, f"batch endpoint {name}/secondary_key"), _now()])
        return self.get_batch_endpoint(name)

    def delete_batch_endpoint(self, name: str) -> None:
        with self.transaction():
            self._exec("DELETE FROM batch_deployments WHERE endpoint_name = ?", [name])
            self._exec("DELETE FROM batch_endpoints WHERE name = ?", [name])

    # -- batch deployments ------------------------------------------------------------------

    _BATCH_DEPLOYMENT_COLS = "spec, code_digest, created_at, updated_at"

    def _batch_deployment(self, row: tuple[Any, ...]) -> BatchDeploymentRecord:
        spec, code_digest, created, updated = row
        return BatchDeploymentRecord(spec=msgspec.json.decode(spec, type=BatchDeploymentSpec),
                                     code_digest=code_digest, created_at=created, updated_at=updated)

    def find_batch_deployment(self, endpoint: str, name: str) -> BatchDeploymentRecord | None:
        row = self._one(f"SELECT {self._BATCH_DEPLOYMENT_COLS} FROM batch_deployments "
                        "WHERE endpoint_name = ? AND name = ?", [endpoint, name])
        return self._batch_deployment(row) if row else None

    def get_batch_deployment(self, endpoint: str, name: str) -> BatchDeploymentRecord:
        found = self.find_batch_deployment(endpoint, name)
        if found is None:
            known = [d.spec.name for d in self.list_batch_deployments(endpoint)]
            raise NotFound(f"deployment {name!r} does not exist on batch endpoint {endpoint!r} "
                           f"(it has: {', '.join(known) or 'none'})", field="deployment")
        return found

    def list_batch_deployments(self, endpoint: str | None = None) -> list[BatchDeploymentRecord]:
        sql = f"SELECT {self._BATCH_DEPLOYMENT_COLS} FROM batch_deployments"
        sql += " WHERE endpoint_name = ?" if endpoint else ""
        return [self._batch_deployment(r) for r in self._all(sql + " ORDER BY endpoint_name, name",
                                                             [endpoint] if endpoint else [])]

    def put_batch_deployment(self, spec: BatchDeploymentSpec, code_digest: str | None) -> BatchDeploymentRecord:
        self._exec("INSERT INTO batch_deployments (endpoint_name, name, spec, code_digest, updated_at) "
                   "VALUES (?, ?, ?, ?, ?) ON CONFLICT (endpoint_name, name) DO UPDATE SET spec = excluded.spec, "
                   "code_digest = excluded.code_digest, updated_at = excluded.updated_at",
                   [spec.endpoint_name, spec.name, _json(spec), code_digest, _now()])
        return self.get_batch_deployment(spec.endpoint_name, spec.name)

    def delete_batch_deployment(self, endpoint: str, name: str) -> None:
        self._exec("DELETE FROM batch_deployments WHERE endpoint_name = ? AND name = ?", [endpoint, name])

    # -- data assets ------------------------------------------------------------------------

    _DATA_COLS = "d.name, d.version, d.type, d.digest, a.name, d.description, d.tags, d.created_at"

    @staticmethod
    def _data(row: tuple[Any, ...]) -> DataRecord:
        name, version, type_, digest, path_name, description, tags, created = row
        return DataRecord(name=name, version=version, type=type_, digest=digest, path_name=path_name,
                          description=description, tags=json.loads(tags), created_at=created)

    def next_data_version(self, name: str) -> str:
        latest = self._aggregate("SELECT max(TRY_CAST(version AS BIGINT)) FROM data_assets WHERE name = ?", [name])
        return str((latest or 0) + 1)

    def add_data(self, *, name: str, version: str, type: str, digest: str, description: str,
                 tags: dict[str, str]) -> DataRecord:
        self._exec("INSERT INTO data_assets (name, version, type, digest, description, tags) VALUES (?, ?, ?, ?, ?, ?)",
                   [name, version, type, digest, description, _json(tags)])
        return self.get_data(name, version)

    def find_data(self, name: str, version: str | None = None) -> DataRecord | None:
        base = f"SELECT {self._DATA_COLS} FROM data_assets d JOIN artifacts a ON a.digest = d.digest WHERE d.name = ?"
        if version is None:
            row = self._one(base + " ORDER BY TRY_CAST(version AS BIGINT) DESC NULLS LAST, d.created_at DESC LIMIT 1",
                            [name])
        else:
            row = self._one(base + " AND version = ?", [name, version])
        return self._data(row) if row else None

    def get_data(self, name: str, version: str | None = None) -> DataRecord:
        found = self.find_data(name, version)
        if found is None:
            what = f"data asset {name!r}" + (f" version {version!r}" if version else "")
            raise NotFound(f"{what} is not registered (see `appliance data list`)", field="input")
        return found

    def list_data(self, name: str | None = None) -> list[DataRecord]:
        sql = f"SELECT {self._DATA_COLS} FROM data_assets d JOIN artifacts a ON a.digest = d.digest"
        sql += " WHERE d.name = ?" if name else ""
        sql += " ORDER BY d.name, TRY_CAST(version AS BIGINT) NULLS LAST, version"
        return [self._data(r) for r in self._all(sql, [name] if name else [])]

    # -- jobs and their ledger --------------------------------------------------------------

    _JOB_COLS = ("name, endpoint_name, deployment_name, status, spec, code_digest, input, output_dir, error, "
                 "created_at, started_at, ended_at")

    @staticmethod
    def _job(row: tuple[Any, ...]) -> JobRecord:
        name, endpoint, deployment, status, spec, code, input_, output, error, created, started, ended = row
        return JobRecord(name=name, endpoint_name=endpoint, deployment_name=deployment, status=status,
                         spec=msgspec.json.decode(spec, type=BatchDeploymentSpec), code_digest=code,
                         input=json.loads(input_), output_dir=output, error=error, created_at=created,
                         started_at=started, ended_at=ended)

    def add_job(self, *, name: str, spec: BatchDeploymentSpec, code_digest: str | None, input: dict[str, Any],
                output_dir: str, mini_batches: list[list[str]]) -> JobRecord:
        """A job in `Preparing`, with its ledger: every mini-batch pending, in order."""
        with self.transaction():
            self._exec("INSERT INTO jobs (name, endpoint_name, deployment_name, status, spec, code_digest, input, "
                       "output_dir) VALUES (?, ?, ?, 'Preparing', ?, ?, ?, ?)",
                       [name, spec.endpoint_name, spec.name, _json(spec), code_digest, _json(input), output_dir])
            if mini_batches:
                with self._lock:
                    self._db.executemany("INSERT INTO job_mini_batches (job, idx, files, status) "
                                         "VALUES (?, ?, ?, 'pending')",
                                         [[name, i, files] for i, files in enumerate(mini_batches)])
        return self.get_job(name)

    def find_job(self, name: str) -> JobRecord | None:
        row = self._one(f"SELECT {self._JOB_COLS} FROM jobs WHERE name = ?", [name])
        return self._job(row) if row else None

    def get_job(self, name: str) -> JobRecord:
        found = self.find_job(name)
        if found is None:
            raise NotFound(f"job {name!r} does not exist (see `appliance job list`)", field="name")
        return found

    def list_jobs(self, endpoint: str | None = None, deployment: str | None = None,
                  unfinished: bool = False) -> list[JobRecord]:
        where, params = [], []
        if endpoint:
            where.append("endpoint_name = ?")
            params.append(endpoint)
        if deployment:
            where.append("deployment_name = ?")
            params.append(deployment)
        if unfinished:
            where.append("status NOT IN ('Completed', 'Failed', 'Canceled')")
        sql = f"SELECT {self._JOB_COLS} FROM jobs" + (" WHERE " + " AND ".join(where) if where else "")
        return [self._job(r) for r in self._all(sql + " ORDER BY created_at DESC, name", params)]

    def set_job_status(self, name: str, status: str, error: str | None = None) -> None:
        started = "coalesce(started_at, ?)" if status == "Running" else "started_at"
        ended = "?" if status in ("Completed", "Failed", "Canceled") else "NULL"
        params: list[Any] = [status, error]
        params += [_now()] if status == "Running" else []
        params += [_now()] if ended == "?" else []
        self._exec(f"UPDATE jobs SET status = ?, error = ?, started_at = {started}, ended_at = {ended} "
                   "WHERE name = ?", [*params, name])

    def mini_batches(self, job: str) -> list[MiniBatch]:
        rows = self._all("SELECT idx, files, status, attempts, succeeded, failed, error FROM job_mini_batches "
                         "WHERE job = ? ORDER BY idx", [job])
        return [MiniBatch(idx=i, files=list(f), status=s, attempts=a, succeeded=ok, failed=bad, error=e)
                for i, f, s, a, ok, bad, e in rows]

    def record_mini_batches(self, job: str, batches: list[MiniBatch]) -> None:
        """The ledger's rows of these mini-batches, as they are now (one statement for all)."""
        if not batches:
            return
        with self._lock:
            self._db.executemany("UPDATE job_mini_batches SET status = ?, attempts = ?, succeeded = ?, failed = ?, "
                                 "error = ? WHERE job = ? AND idx = ?",
                                 [[b.status, b.attempts, b.succeeded, b.failed, b.error, job, b.idx]
                                  for b in batches])
