"""Secrets at rest, with a real daemon: a home only its owner reads (tightened if an earlier version
left it open), endpoint keys nowhere in the database's bytes, and tokens that die with their endpoint."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import duckdb
import httpx
from conftest import Daemon

from appliance.registry.store import migrations

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.2, 3.4, 5.4, 2.3]]
OLD_PRIMARY, OLD_SECONDARY = "OLD-PRIMARY-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "OLD-SECONDARY-bbbbbbbbbbbbbbbbbbbbbbbbbbbb"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def on_disk(home: Path) -> bytes:
    return b"".join(p.read_bytes() for p in (home / "appliance.duckdb", home / "appliance.duckdb.wal")
                    if p.exists())


def private(home: Path) -> dict[str, int]:
    """Every path of the home the daemon keeps private, and its mode (what should be 0700/0600)."""
    found = {".": mode(home)}
    for name in ("admin.token", "token.key", "secrets.key", "daemon.json", "daemon.lock", "appliance.duckdb",
                 "appliance.duckdb.wal"):
        if (home / name).exists():
            found[name] = mode(home / name)
    for path in [home / "logs", *(home / "logs").rglob("*")]:
        found[str(path.relative_to(home))] = mode(path)
    return found


def expected_modes(found: dict[str, int], home: Path) -> dict[str, int]:
    return {name: 0o700 if (home / name).is_dir() else 0o600 for name in found}


def old_home(home: Path) -> None:
    """A home as an earlier version left it: 0755/0644, keys in plaintext in a registry at migration 4."""
    (home / "logs" / "old-ep" / "blue").mkdir(parents=True)
    (home / "logs" / "daemon.log").write_text("earlier\n")
    (home / "logs" / "old-ep" / "blue" / "blue-1.log").write_text("earlier\n")
    (home / "admin.token").write_text("old-admin-token-cccccccccccccccccccccccccc\n")
    with duckdb.connect(str(home / "appliance.duckdb")) as db:
        db.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMP)")
        for version, sql in [m for m in migrations() if m[0] <= 4]:
            db.execute(sql)
            db.execute("INSERT INTO schema_migrations VALUES (?, current_timestamp::TIMESTAMP)", [version])
        db.execute("INSERT INTO online_endpoints (name, spec, primary_key, secondary_key) VALUES "
                   "('old-ep', '{\"name\": \"old-ep\"}', ?, ?)", [OLD_PRIMARY, OLD_SECONDARY])
    for path in [home, *home.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def test_a_pre_existing_open_home_is_tightened_and_its_keys_encrypted(tmp_path: Path, iris_project: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    old_home(home)
    assert OLD_PRIMARY.encode() in on_disk(home) and mode(home / "appliance.duckdb") == 0o644
    daemon = Daemon(home).start()
    try:
        found = private(home)
        assert {"admin.token", "token.key", "secrets.key", "daemon.json", "daemon.lock", "appliance.duckdb",
                "logs/daemon.log", "logs/old-ep/blue/blue-1.log"} <= set(found)
        assert found == expected_modes(found, home)
        data = on_disk(home)
        assert OLD_PRIMARY.encode() not in data and OLD_SECONDARY.encode() not in data
        keys = daemon.api("POST", "/endpoints/old-ep/credentials").json()  # migrated, still the same keys
        assert (keys["primaryKey"], keys["secondaryKey"]) == (OLD_PRIMARY, OLD_SECONDARY)

        # What the daemon writes from now on is private too: instances' logs, the WAL.
        daemon.cli("apply", "-f", "endpoint.yml", "-f", "blue.yml", cwd=iris_project)
        assert daemon.score("my-ep", {"data": ROWS}).status_code == 200
        assert (home / "appliance.duckdb.wal").exists()
        found = private(home)
        assert {"logs/my-ep", "logs/my-ep/blue", "appliance.duckdb.wal"} <= set(found)
        assert [name for name in found if name.startswith("logs/my-ep/blue/blue-")]  # the instance's log
        assert found == expected_modes(found, home)
        key = daemon.key("my-ep")
        assert key.encode() not in on_disk(home)
    finally:
        assert daemon.stop() == 0
    found = private(home)
    assert found == expected_modes(found, home)
    assert not any(k.encode() in on_disk(home) for k in (OLD_PRIMARY, OLD_SECONDARY, key))


def test_keys_and_rotated_keys_are_not_in_the_database_bytes(daemon: Daemon, iris_project: Path) -> None:
    daemon.cli("apply", "-f", "endpoint.yml", "-f", "blue.yml", cwd=iris_project)
    old = json.loads(daemon.cli("endpoint", "get-credentials", "my-ep").stdout)
    assert daemon.score("my-ep", {"data": ROWS}, key=old["primaryKey"]).status_code == 200
    daemon.cli("endpoint", "regenerate-keys", "my-ep", "--key-type", "primary")
    daemon.cli("endpoint", "regenerate-keys", "my-ep", "--key-type", "secondary", "--value", "GIVEN-" + "k" * 30)
    new = json.loads(daemon.cli("endpoint", "get-credentials", "my-ep").stdout)
    assert daemon.score("my-ep", {"data": ROWS}, key=new["primaryKey"]).status_code == 200
    assert daemon.score("my-ep", {"data": ROWS}, key=old["primaryKey"]).status_code == 401
    every_key = [old["primaryKey"], old["secondaryKey"], new["primaryKey"], new["secondaryKey"]]
    data = on_disk(daemon.home)  # the commits are in the WAL
    assert data and not any(k.encode() in data for k in every_key)
    assert daemon.stop() == 0  # checkpointed into the file
    data = on_disk(daemon.home)
    assert data and not any(k.encode() in data for k in every_key)


def test_a_token_of_a_deleted_endpoint_fails_on_a_recreated_one(daemon: Daemon, iris_project: Path) -> None:
    (iris_project / "tok.yml").write_text("name: tok-ep\nauth_mode: aml_token\n")
    (iris_project / "tok-blue.yml").write_text("name: blue\nendpoint_name: tok-ep\nmodel:\n  path: ./model/\n")

    def call(token: str) -> httpx.Response:
        return httpx.post(f"{daemon.url}/endpoints/tok-ep/score", json={"data": ROWS},
                          headers={"authorization": f"Bearer {token}"}, timeout=30)

    daemon.cli("apply", "-f", "tok.yml", "-f", "tok-blue.yml", cwd=iris_project)
    first = json.loads(daemon.cli("endpoint", "get-token", "tok-ep").stdout)["accessToken"]
    assert call(first).status_code == 200
    daemon.cli("endpoint", "delete", "tok-ep", "--yes")
    daemon.cli("apply", "-f", "tok.yml", "-f", "tok-blue.yml", cwd=iris_project)
    refused = call(first)
    assert refused.status_code == 401 and "deleted" in refused.json()["message"]
    second = json.loads(daemon.cli("endpoint", "get-token", "tok-ep").stdout)["accessToken"]
    assert call(second).status_code == 200
    # And across a restart: the id is stored, so a token keeps working as long as its endpoint lives.
    daemon.stop()
    daemon.start()
    assert call(second).status_code == 200 and call(first).status_code == 401
