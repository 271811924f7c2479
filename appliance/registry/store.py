"""The registry: one DuckDB file, one writer (this object, owned by the daemon).

Every method takes a re-entrant lock, so handlers may call it from worker threads; `transaction()`
groups several writes so that a failed create leaves nothing behind.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb
import msgspec

from appliance.registry.artifacts import Artifact, ArtifactStore
from appliance.registry.batch import BatchTables
from appliance.registry.monitors import MonitorTables
from appliance.registry.profiles import ProfileTables
from appliance.registry.records import (
    DeploymentRecord,
    EndpointRecord,
    EnvironmentRecord,
    Event,
    ModelRecord,
)
from appliance.registry.sealed import Sealer
from appliance.specs import EnvironmentSpec, NotFound, OnlineDeploymentSpec, OnlineEndpointSpec

log = logging.getLogger("appliance.registry")


def _now() -> datetime:
    """UTC, naive: DuckDB's TIMESTAMPTZ would need the pytz module and the ICU extension."""
    return datetime.now(UTC).replace(tzinfo=None)


def _json(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def migrations() -> list[tuple[int, str]]:
    """Numbered SQL files shipped in `migrations/`, in order."""
    folder = resources.files("appliance.registry") / "migrations"
    found = [(int(f.name.split("_", 1)[0]), f.read_text()) for f in folder.iterdir()
             if f.name.endswith(".sql")]
    return sorted(found)


ROW_GROUP_SIZE = 8192
SEALED_KEYS = 5  # the migration from which endpoint keys are stored sealed


def _quoted(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


class Registry(BatchTables, ProfileTables, MonitorTables):
    """`secret_key` (32 bytes, the home's secrets.key) seals the endpoint keys: they are encrypted on
    write and opened on read, so records hold them in plaintext and the file never does."""

    def __init__(self, home: Path, secret_key: bytes) -> None:
        super().__init__()
        self.home = home
        self.path = home / "appliance.duckdb"
        self._sealer = Sealer(secret_key)
        self.artifacts = ArtifactStore(home / "artifacts")
        # One thread: DuckDB's own pool would run the request log's checkpoints at full priority,
        # beside the data plane; this way they run in the (lower-priority) writer thread that commits.
        self._db = duckdb.connect(config={"threads": 1})
        self._attach(self.path, "registry")
        self._db.execute("USE registry")
        try:
            self._migrate()
            self._check_key()
        except BaseException:
            self._db.close()
            raise

    def _attach(self, path: Path, alias: str) -> None:
        # Row groups of ROW_GROUP_SIZE: a request-log batch larger than one is written to the file,
        # compressed, as it is inserted, instead of into the WAL and again at the next checkpoint
        # (measured: 15k-row batches cost 1.6 µs a row with DuckDB's 122,880, 1.2 with 8,192,
        # and the 100-150 ms checkpoint every ~9 s at 15k rows/s was gone).
        self._db.execute(f"ATTACH {_quoted(path)} AS {alias} (ROW_GROUP_SIZE {ROW_GROUP_SIZE})")

    # -- plumbing ---------------------------------------------------------------------------

    def _migrate(self) -> None:
        with self._lock:
            self._db.execute("CREATE TABLE IF NOT EXISTS schema_migrations "
                             "(version INTEGER PRIMARY KEY, applied_at TIMESTAMP DEFAULT current_timestamp::TIMESTAMP)")
            done = {r[0] for r in self._db.execute("SELECT version FROM schema_migrations").fetchall()}
            for version, sql in migrations():
                if version in done:
                    continue
                with self.transaction():
                    self._db.execute(sql)
                    if version == SEALED_KEYS:
                        self._seal_plaintext_keys()
                    self._db.execute("INSERT INTO schema_migrations (version) VALUES (?)", [version])
            if self._aggregate("SELECT count(*) FROM registry_tasks WHERE task = 'rewrite'"):
                self._rewrite()

    def _seal_plaintext_keys(self) -> None:
        """Migration 5: the keys stored in plaintext until then, sealed in place (the rewrite that
        follows takes the plaintext out of the file's free blocks)."""
        for name, primary, secondary in self._all("SELECT name, primary_key, secondary_key FROM online_endpoints"):
            self._exec("UPDATE online_endpoints SET primary_key = ?, secondary_key = ? WHERE name = ?",
                       [self._seal(name, "primary_key", primary), self._seal(name, "secondary_key", secondary), name])

    def _rewrite(self) -> None:
        """The database copied into a fresh file, which then takes its place: DuckDB keeps old row
        versions in free blocks of the file, which only a copy leaves behind. The task row goes with
        the old file, so a crash before the swap leaves the rewrite to the next open."""
        fresh = self.path.with_name(self.path.name + ".rewrite")
        wal = self.path.with_name(self.path.name + ".wal")
        for stale in (fresh, fresh.with_name(fresh.name + ".wal")):
            stale.unlink(missing_ok=True)
        self._db.execute("CHECKPOINT")
        self._attach(fresh, "fresh")
        try:
            self._db.execute("COPY FROM DATABASE registry TO fresh")
            self._db.execute("DELETE FROM fresh.registry_tasks WHERE task = 'rewrite'")
        finally:
            self._db.execute("DETACH fresh")
        self._db.execute("USE memory")
        self._db.execute("DETACH registry")
        try:
            if wal.exists():  # it belongs to the old file: never put it beside the new one
                log.warning("%s is still there after a checkpoint; the rewrite of %s waits for the next start",
                            wal, self.path)
                return
            os.replace(fresh, self.path)
            folder = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)
        finally:
            fresh.unlink(missing_ok=True)
            self._attach(self.path, "registry")
            self._db.execute("USE registry")

    def _check_key(self) -> None:
        """Fail at start, with why, rather than at the first endpoint read, when the key is not the one
        the keys were sealed with."""
        row = self._one("SELECT name, primary_key FROM online_endpoints LIMIT 1")
        if row is not None:
            self._sealer.open(row[1], f"online endpoint {row[0]}/primary_key")

    def _seal(self, name: str, column: str, value: str) -> str:
        return self._sealer.seal(value, f"online endpoint {name}/{column}")

    def _unseal(self, name: str, column: str, value: str) -> str:
        return self._sealer.open(value, f"online endpoint {name}/{column}")

    @property
    def schema_version(self) -> int:
        return self._aggregate("SELECT max(version) FROM schema_migrations")

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A connection of its own for another thread (the request-log writer, a query)."""
        cursor = self._db.cursor()
        cursor.execute("USE registry")
        return cursor

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- artifacts --------------------------------------------------------------------------

    def put_artifact(self, src: Path) -> Artifact:
        """Stores `src` (copied and hashed without the registry's lock) and its row."""
        art = self.artifacts.put(src)
        try:
            self.add_artifact(art)
        finally:
            self.artifacts.unpin(art.digest)
        return art

    def add_artifact(self, art: Artifact) -> None:
        """The row of a stored artifact (pinned by its put until this row's transaction is over)."""
        self._exec("INSERT INTO artifacts (digest, name, size, files) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                   [art.digest, art.name, art.size, art.files])

    def remove_unused_artifacts(self, in_use: set[str]) -> list[str]:
        """Removes, rows and files, every stored artifact that no model and no deployment refers to and
        that is not `in_use` (by a running instance: a replaced deployment's old one, say), nor pinned by a
        put whose row is not written yet, and what an interrupted put left behind. Each code change under
        hot reload stores a new snapshot: without this, every save would stay on disk. Returns the digests
        removed."""
        with self.transaction():  # no write in between: a row written now is committed before, or after
            referenced = {d for (d,) in self._all(
                "SELECT digest FROM models UNION SELECT code_digest FROM online_deployments UNION "
                "SELECT code_digest FROM batch_deployments UNION SELECT digest FROM data_assets UNION "
                "SELECT code_digest FROM jobs WHERE status NOT IN ('Completed', 'Failed', 'Canceled')")} | in_use
            removed = self.artifacts.sweep(lambda: referenced)
            keep = referenced | self.artifacts.pinned()
            rows = {d for (d,) in self._all("SELECT digest FROM artifacts")} - keep
            self._exec("DELETE FROM artifacts WHERE list_contains(?, digest)", [sorted(rows)])
        return sorted(removed | rows)

    def artifact_name(self, digest: str) -> str:
        row = self._one("SELECT name FROM artifacts WHERE digest = ?", [digest])
        if row is None:
            raise NotFound(f"artifact {digest} is not stored")
        return row[0]

    # -- models -----------------------------------------------------------------------------

    _MODEL_COLS = ("m.name, m.version, m.type, m.framework, m.digest, a.name, m.signature, m.tags, "
                   "m.description, m.created_at, m.archived")

    def _model(self, row: tuple[Any, ...]) -> ModelRecord:
        name, version, type_, framework, digest, path_name, signature, tags, description, created, archived = row
        return ModelRecord(name=name, version=version, type=type_, framework=framework, digest=digest,
                           path_name=path_name, signature=json.loads(signature) if signature else None,
                           tags=json.loads(tags), description=description, created_at=created,
                           archived=bool(archived))

    def next_model_version(self, name: str) -> str:
        latest = self._aggregate("SELECT max(TRY_CAST(version AS BIGINT)) FROM models WHERE name = ?", [name])
        return str((latest or 0) + 1)

    def add_model(self, *, name: str, version: str, type: str, framework: str, digest: str,
                  signature: dict[str, Any] | None, tags: dict[str, str], description: str) -> ModelRecord:
        self._exec("INSERT INTO models (name, version, type, framework, digest, signature, tags, description) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   [name, version, type, framework, digest, _json(signature) if signature else None,
                    _json(tags), description])
        return self.get_model(name, version)

    def find_model(self, name: str, version: str | None = None) -> ModelRecord | None:
        """A version, or the latest (highest number, then newest) when version is None."""
        base = (f"SELECT {self._MODEL_COLS} FROM models m JOIN artifacts a ON a.digest = m.digest "
                "WHERE m.name = ?")
        if version is None:
            row = self._one(base + " ORDER BY TRY_CAST(version AS BIGINT) DESC NULLS LAST, "
                            "m.created_at DESC LIMIT 1", [name])
        else:
            row = self._one(base + " AND version = ?", [name, version])
        return self._model(row) if row else None

    def get_model(self, name: str, version: str | None = None) -> ModelRecord:
        found = self.find_model(name, version)
        if found is None:
            what = f"model {name!r}" + (f" version {version!r}" if version else "")
            raise NotFound(f"{what} is not registered (see `appliance model list`)", field="model")
        return found

    def list_models(self, name: str | None = None) -> list[ModelRecord]:
        sql = f"SELECT {self._MODEL_COLS} FROM models m JOIN artifacts a ON a.digest = m.digest"
        sql += " WHERE m.name = ?" if name else ""
        sql += " ORDER BY m.name, TRY_CAST(version AS BIGINT) NULLS LAST, version"
        return [self._model(r) for r in self._all(sql, [name] if name else [])]

    def archive_model(self, name: str, version: str | None, archived: bool) -> list[ModelRecord]:
        """Set (or clear) the archived flag of one version, or of every version of `name`."""
        with self.transaction():
            if version is not None:
                self.get_model(name, version)
                self._exec("UPDATE models SET archived = ? WHERE name = ? AND version = ?", [archived, name, version])
            else:
                self.get_model(name)
                self._exec("UPDATE models SET archived = ? WHERE name = ?", [archived, name])
        return [m for m in self.list_models(name) if version is None or m.version == version]

    # -- environments -----------------------------------------------------------------------

    def _environment(self, row: tuple[Any, ...]) -> EnvironmentRecord:
        name, version, digest, spec, created = row
        return EnvironmentRecord(name=name, version=version, digest=digest,
                                 spec=msgspec.json.decode(spec, type=EnvironmentSpec), created_at=created)

    def next_environment_version(self, name: str) -> str:
        latest = self._aggregate("SELECT max(TRY_CAST(version AS BIGINT)) FROM environments WHERE name = ?",
                                 [name])
        return str((latest or 0) + 1)

    def add_environment(self, spec: EnvironmentSpec, digest: str) -> EnvironmentRecord:
        assert spec.name and spec.version
        self._exec("INSERT INTO environments (name, version, digest, spec) VALUES (?, ?, ?, ?)",
                   [spec.name, spec.version, digest, _json(spec)])
        return self.get_environment(spec.name, str(spec.version))  # the loader made it a str already

    def find_environment(self, name: str, version: str | None = None) -> EnvironmentRecord | None:
        base = "SELECT name, version, digest, spec, created_at FROM environments WHERE name = ?"
        if version is None:
            row = self._one(base + " ORDER BY TRY_CAST(version AS BIGINT) DESC NULLS LAST, "
                            "created_at DESC LIMIT 1", [name])
        else:
            row = self._one(base + " AND version = ?", [name, version])
        return self._environment(row) if row else None

    def get_environment(self, name: str, version: str | None = None) -> EnvironmentRecord:
        found = self.find_environment(name, version)
        if found is None:
            what = f"environment {name!r}" + (f" version {version!r}" if version else "")
            raise NotFound(f"{what} is not registered (see `appliance environment list`)",
                           field="environment")
        return found

    def list_environments(self) -> list[EnvironmentRecord]:
        return [self._environment(r) for r in self._all(
            "SELECT name, version, digest, spec, created_at FROM environments "
            "ORDER BY name, TRY_CAST(version AS BIGINT) NULLS LAST, version")]

    # -- online endpoints -------------------------------------------------------------------

    _ENDPOINT_COLS = "name, id, spec, primary_key, secondary_key, created_at, updated_at"

    def _endpoint(self, row: tuple[Any, ...]) -> EndpointRecord:
        name, id_, spec, primary, secondary, created, updated = row
        return EndpointRecord(spec=msgspec.json.decode(spec, type=OnlineEndpointSpec), id=id_,
                              primary_key=self._unseal(name, "primary_key", primary),
                              secondary_key=self._unseal(name, "secondary_key", secondary),
                              created_at=created, updated_at=updated)

    def find_endpoint(self, name: str) -> EndpointRecord | None:
        row = self._one(f"SELECT {self._ENDPOINT_COLS} FROM online_endpoints WHERE name = ?", [name])
        return self._endpoint(row) if row else None

    def get_endpoint(self, name: str) -> EndpointRecord:
        found = self.find_endpoint(name)
        if found is None:
            raise NotFound(f"online endpoint {name!r} does not exist (see `appliance endpoint list`)",
                           field="endpoint")
        return found

    def list_endpoints(self) -> list[EndpointRecord]:
        return [self._endpoint(r) for r in self._all(
            f"SELECT {self._ENDPOINT_COLS} FROM online_endpoints ORDER BY name")]

    def put_endpoint(self, spec: OnlineEndpointSpec, primary_key: str, secondary_key: str) -> EndpointRecord:
        """Creates (with a new random id) or updates (keeping its id) an endpoint; keys are stored sealed."""
        self._exec("INSERT INTO online_endpoints (name, id, spec, primary_key, secondary_key, updated_at) "
                   "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, "
                   "primary_key = excluded.primary_key, secondary_key = excluded.secondary_key, "
                   "updated_at = excluded.updated_at",
                   [spec.name, secrets.token_hex(16), _json(spec), self._seal(spec.name, "primary_key", primary_key),
                    self._seal(spec.name, "secondary_key", secondary_key), _now()])
        return self.get_endpoint(spec.name)

    def delete_endpoint(self, name: str) -> None:
        with self.transaction():
            self._exec("DELETE FROM online_deployments WHERE endpoint_name = ?", [name])
            self.delete_profiles(name)
            self._exec("DELETE FROM online_endpoints WHERE name = ?", [name])

    # -- online deployments -----------------------------------------------------------------

    _DEPLOYMENT_COLS = "spec, code_digest, created_at, updated_at"

    def _deployment(self, row: tuple[Any, ...]) -> DeploymentRecord:
        spec, code_digest, created, updated = row
        return DeploymentRecord(spec=msgspec.json.decode(spec, type=OnlineDeploymentSpec),
                                code_digest=code_digest, created_at=created, updated_at=updated)

    def find_deployment(self, endpoint: str, name: str) -> DeploymentRecord | None:
        row = self._one(f"SELECT {self._DEPLOYMENT_COLS} FROM online_deployments "
                        "WHERE endpoint_name = ? AND name = ?", [endpoint, name])
        return self._deployment(row) if row else None

    def get_deployment(self, endpoint: str, name: str) -> DeploymentRecord:
        found = self.find_deployment(endpoint, name)
        if found is None:
            known = [d.spec.name for d in self.list_deployments(endpoint)]
            raise NotFound(f"deployment {name!r} does not exist on endpoint {endpoint!r} "
                           f"(it has: {', '.join(known) or 'none'})", field="deployment")
        return found

    def list_deployments(self, endpoint: str | None = None) -> list[DeploymentRecord]:
        sql = f"SELECT {self._DEPLOYMENT_COLS} FROM online_deployments"
        sql += " WHERE endpoint_name = ?" if endpoint else ""
        return [self._deployment(r) for r in self._all(sql + " ORDER BY endpoint_name, name",
                                                       [endpoint] if endpoint else [])]

    def put_deployment(self, spec: OnlineDeploymentSpec, code_digest: str | None) -> DeploymentRecord:
        self._exec("INSERT INTO online_deployments (endpoint_name, name, spec, code_digest, updated_at) "
                   "VALUES (?, ?, ?, ?, ?) ON CONFLICT (endpoint_name, name) DO UPDATE SET spec = excluded.spec, "
                   "code_digest = excluded.code_digest, updated_at = excluded.updated_at",
                   [spec.endpoint_name, spec.name, _json(spec), code_digest, _now()])
        return self.get_deployment(spec.endpoint_name, spec.name)

    def delete_deployment(self, endpoint: str, name: str) -> None:
        self._exec("DELETE FROM online_deployments WHERE endpoint_name = ? AND name = ?", [endpoint, name])
        self.delete_profiles(endpoint, name)

    # -- events -----------------------------------------------------------------------------

    def add_event(self, kind: str, subject: str, **detail: Any) -> None:
        self._exec("INSERT INTO events (kind, subject, detail) VALUES (?, ?, ?)",
                   [kind, subject, _json(detail)])

    def list_events(self, subject: str | None = None, limit: int = 100) -> list[Event]:
        sql = 'SELECT id, "at", kind, subject, detail FROM events'
        params: list[Any] = []
        if subject:
            sql += " WHERE subject = ? OR subject LIKE ?"
            params += [subject, subject + "/%"]
        rows = self._all(sql + " ORDER BY id DESC LIMIT ?", [*params, limit])
        return [Event(id=i, at=at, kind=k, subject=s, detail=json.loads(d)) for i, at, k, s, d in rows]
