"""Deployment profiles: what `deployment profile` measured and recommends, kept with the deployment."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import msgspec

from appliance.registry.database import Database


class ProfileTables(Database):
    def put_profile(self, endpoint: str, name: str, profile: Any) -> None:
        """Stores `profile` (a struct or JSON-able value) as the deployment's, replacing the last one."""
        self._exec("INSERT INTO deployment_profiles (endpoint_name, name, profile, created_at) VALUES (?, ?, ?, ?) "
                   "ON CONFLICT (endpoint_name, name) DO UPDATE SET profile = excluded.profile, "
                   "created_at = excluded.created_at",
                   [endpoint, name, msgspec.json.encode(profile).decode(), datetime.now(UTC).replace(tzinfo=None)])

    def find_profile(self, endpoint: str, name: str) -> dict[str, Any] | None:
        row = self._one("SELECT profile FROM deployment_profiles WHERE endpoint_name = ? AND name = ?",
                        [endpoint, name])
        return json.loads(row[0]) if row else None

    def list_profiles(self, endpoint: str) -> dict[str, dict[str, Any]]:
        """Deployment name → its profile, for the endpoint's profiled deployments."""
        rows = self._all("SELECT name, profile FROM deployment_profiles WHERE endpoint_name = ?", [endpoint])
        return {name: json.loads(profile) for name, profile in rows}

    def delete_profiles(self, endpoint: str, name: str | None = None) -> None:
        """The deployment's profile (every deployment's of the endpoint, without `name`)."""
        if name is None:
            self._exec("DELETE FROM deployment_profiles WHERE endpoint_name = ?", [endpoint])
        else:
            self._exec("DELETE FROM deployment_profiles WHERE endpoint_name = ? AND name = ?", [endpoint, name])
