"""Secrets at rest, on real DuckDB files: endpoint keys encrypted in the registry (and gone from the
file once migrated or rotated), endpoint ids that tokens are bound to, and a home only its owner reads."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import duckdb
import pytest
from conftest import KEY

from appliance.home import Home
from appliance.registry import ArtifactStore, Registry
from appliance.registry.sealed import PREFIX, Sealer, SealError
from appliance.registry.store import migrations
from appliance.router import tokens
from appliance.specs import OnlineEndpointSpec

PRIMARY, SECONDARY = "PRIMARY-KEY-aaaaaaaaaaaaaaaaaaaaaaaaaaaa", "SECONDARY-KEY-bbbbbbbbbbbbbbbbbbbbbbbbbbb"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def on_disk(home: Path) -> bytes:
    """Every byte the registry keeps: the database file and its write-ahead log."""
    return b"".join(p.read_bytes() for p in (home / "appliance.duckdb", home / "appliance.duckdb.wal")
                    if p.exists())


def stored_keys(home: Path) -> list[tuple[str, str, str, str]]:
    with duckdb.connect(str(home / "appliance.duckdb"), read_only=True) as db:
        return db.execute("SELECT name, id, primary_key, secondary_key FROM online_endpoints ORDER BY name").fetchall()


# -- encryption -----------------------------------------------------------------------------


def test_sealed_values_are_aes_gcm_with_a_random_nonce_bound_to_their_place() -> None:
    sealer = Sealer(KEY)
    one, two = sealer.seal("s3cret", "ep/primary_key"), sealer.seal("s3cret", "ep/primary_key")
    assert one.startswith(PREFIX) and two.startswith(PREFIX) and one != two  # a fresh nonce each time
    assert "s3cret" not in one
    assert sealer.open(one, "ep/primary_key") == sealer.open(two, "ep/primary_key") == "s3cret"
    with pytest.raises(SealError):  # moved to another row or column
        sealer.open(one, "other/primary_key")
    with pytest.raises(SealError):  # another key
        Sealer(bytes(32)).open(one, "ep/primary_key")
    with pytest.raises(SealError):  # tampered with
        sealer.open(one[:-2] + ("AA" if not one.endswith("AA") else "BB"), "ep/primary_key")
    with pytest.raises(SealError):  # not sealed at all
        sealer.open("s3cret", "ep/primary_key")
    with pytest.raises(ValueError):
        Sealer(b"short")


def test_keys_are_encrypted_on_write_and_plaintext_in_memory(registry: Registry, home: Path) -> None:
    rec = registry.put_endpoint(OnlineEndpointSpec(name="ep"), PRIMARY, SECONDARY)
    assert (rec.primary_key, rec.secondary_key) == (PRIMARY, SECONDARY)
    assert registry.get_endpoint("ep").primary_key == PRIMARY
    assert [e.secondary_key for e in registry.list_endpoints()] == [SECONDARY]
    data = on_disk(home)  # committed: in the WAL now
    assert PRIMARY.encode() not in data and SECONDARY.encode() not in data
    registry.close()
    data = on_disk(home)  # checkpointed into the file
    assert PRIMARY.encode() not in data and SECONDARY.encode() not in data
    [(_, _, primary, secondary)] = stored_keys(home)
    assert primary.startswith(PREFIX) and secondary.startswith(PREFIX)


def test_a_copy_of_the_database_alone_reveals_no_key(registry: Registry, home: Path, tmp_path: Path) -> None:
    registry.put_endpoint(OnlineEndpointSpec(name="ep"), PRIMARY, SECONDARY)
    registry.close()
    stolen = tmp_path / "stolen"
    stolen.mkdir()
    (stolen / "appliance.duckdb").write_bytes((home / "appliance.duckdb").read_bytes())
    with pytest.raises(SealError, match=r"secrets\.key"):
        Registry(stolen, bytes(32))
    reopened = Registry(home, KEY)
    try:
        assert reopened.get_endpoint("ep").primary_key == PRIMARY
    finally:
        reopened.close()


def test_rotated_keys_leave_no_plaintext_in_the_file_or_the_wal(registry: Registry, home: Path) -> None:
    spec = OnlineEndpointSpec(name="ep")
    registry.put_endpoint(spec, PRIMARY, SECONDARY)
    registry._exec("CHECKPOINT")
    rotated = "ROTATED-KEY-cccccccccccccccccccccccccccccc"
    registry.put_endpoint(spec, rotated, SECONDARY)  # regenerate-keys --key-type primary
    for data in (on_disk(home), (home / "appliance.duckdb.wal").read_bytes()):
        assert PRIMARY.encode() not in data and rotated.encode() not in data
    registry.close()
    data = on_disk(home)
    assert not any(k.encode() in data for k in (PRIMARY, SECONDARY, rotated))


# -- endpoint ids ---------------------------------------------------------------------------


def test_an_endpoint_keeps_its_id_until_deleted_and_a_recreated_one_gets_another(registry: Registry) -> None:
    spec = OnlineEndpointSpec(name="ep")
    first = registry.put_endpoint(spec, PRIMARY, SECONDARY)
    assert len(first.id) == 32 and int(first.id, 16) >= 0
    assert registry.put_endpoint(spec, "other-key-dddddddddddddddd", SECONDARY).id == first.id  # an update
    registry.delete_endpoint("ep")
    again = registry.put_endpoint(spec, PRIMARY, SECONDARY)
    assert again.id != first.id
    assert registry.put_endpoint(OnlineEndpointSpec(name="ep2"), PRIMARY, SECONDARY).id not in (first.id, again.id)


def test_a_token_is_bound_to_its_endpoints_id() -> None:
    secret = b"x" * 32
    token, _ = tokens.issue(secret, "ep", "a" * 32, 600)
    assert tokens.verify(secret, "ep", "a" * 32, token.encode()) is None
    why = tokens.verify(secret, "ep", "b" * 32, token.encode())  # deleted, then re-created under that name
    assert why is not None and "deleted" in why
    assert tokens.verify(secret, "other", "a" * 32, token.encode()) == "the token was issued for another endpoint"
    expired, _ = tokens.issue(secret, "ep", "a" * 32, 60, now=0)
    assert "expired" in (tokens.verify(secret, "ep", "a" * 32, expired.encode()) or "")
    forged = token.replace("a" * 32, "b" * 32)  # the id is signed
    assert tokens.verify(secret, "ep", "b" * 32, forged.encode()) == "invalid token"
    old_format = b"apl1.ZXA.9999999999.c2ln"  # tokens issued before ids: refused, not crashed on
    assert tokens.verify(secret, "ep", "a" * 32, old_format) == "invalid token"


# -- migration of an old home ---------------------------------------------------------------


def old_registry(home: Path) -> None:
    """A registry as migration 4 left it, keys in plaintext: one rotated once (the old key's row version
    still in the file's free blocks), and events, request rows and a sequence that must survive."""
    with duckdb.connect(str(home / "appliance.duckdb")) as db:
        db.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMP)")
        for version, sql in [m for m in migrations() if m[0] <= 4]:
            db.execute(sql)
            db.execute("INSERT INTO schema_migrations VALUES (?, current_timestamp::TIMESTAMP)", [version])
        for name, primary in (("ep", "OLD-" + PRIMARY), ("tok", "TOK-" + PRIMARY)):
            db.execute("INSERT INTO online_endpoints (name, spec, primary_key, secondary_key) VALUES (?, ?, ?, ?)",
                       [name, f'{{"name": "{name}"}}', primary, name.upper() + "-" + SECONDARY])
        db.execute("INSERT INTO events (kind, subject, detail) VALUES ('endpoint.created', 'ep', '{}'), "
                   "('endpoint.created', 'tok', '{}')")
        db.execute("CHECKPOINT")
        db.execute("UPDATE online_endpoints SET primary_key = ? WHERE name = 'ep'", [PRIMARY])  # rotated
        db.execute("INSERT INTO request_routes VALUES (1, 'ep', 'blue', 'blue-1', 'primary')")
        db.execute("INSERT INTO request_rows VALUES (7, TIMESTAMP '2026-01-01', 'r-7', 1, false, 200, 1.0, 1, 2, "
                   "NULL)")
        db.execute("UPDATE request_log_next SET id = 8")


def test_an_old_plaintext_home_is_encrypted_and_rewritten_without_the_plaintext(home: Path) -> None:
    old_registry(home)
    before = on_disk(home)
    secrets_before = ["OLD-" + PRIMARY, PRIMARY, "EP-" + SECONDARY, "TOK-" + PRIMARY, "TOK-" + SECONDARY]
    assert all(k.encode() in before for k in secrets_before)  # the defect, as an old daemon left it

    reg = Registry(home, KEY)
    try:
        assert reg.schema_version == migrations()[-1][0]
        ep, tok = reg.list_endpoints()
        assert (ep.primary_key, ep.secondary_key) == (PRIMARY, "EP-" + SECONDARY)
        assert (tok.primary_key, tok.secondary_key) == ("TOK-" + PRIMARY, "TOK-" + SECONDARY)
        assert len({ep.id, tok.id}) == 2 and all(len(i) == 32 for i in (ep.id, tok.id))
        data = on_disk(home)
        assert not any(k.encode() in data for k in secrets_before), "plaintext left in the database file"
        # Everything else came across: rows, the events' sequence, the request log's numbering.
        reg.add_event("endpoint.updated", "ep")
        assert [e.id for e in reg.list_events()] == [3, 2, 1]
        assert reg._all("SELECT id, request_id, endpoint, key_id FROM request_log") == [(7, "r-7", "ep", "primary")]
        assert reg._one("SELECT id FROM request_log_next") == (8,)
        assert reg._all("SELECT * FROM registry_tasks") == []
    finally:
        reg.close()
    assert [(n, i) for n, i, _, _ in stored_keys(home)] == [("ep", ep.id), ("tok", tok.id)]
    assert all(p.startswith(PREFIX) and s.startswith(PREFIX) for _, _, p, s in stored_keys(home))
    assert sorted(p.name for p in home.iterdir()) == ["appliance.duckdb", "artifacts"]  # no copy left behind

    again = Registry(home, KEY)  # migrated once: nothing more to do
    try:
        assert again.get_endpoint("ep").id == ep.id and again.get_endpoint("ep").primary_key == PRIMARY
    finally:
        again.close()


def test_a_rewrite_cut_short_is_done_at_the_next_open(home: Path) -> None:
    """The rewrite is a task stored with the migration: a crash before the swap leaves it to do."""
    old_registry(home)
    Registry(home, KEY).close()
    with duckdb.connect(str(home / "appliance.duckdb")) as db:
        db.execute("INSERT INTO registry_tasks VALUES ('rewrite')")
        db.execute("INSERT INTO online_endpoints VALUES ('leak', 'x', '{\"name\": \"leak\"}', 'p', 's', "
                   "TIMESTAMP '2026-01-01', TIMESTAMP '2026-01-01')")
        db.execute("UPDATE online_endpoints SET spec = '{\"name\": \"leak\", \"tags\": {\"t\": \"LEAKED-VALUE\"}}' "
                   "WHERE name = 'leak'")
        db.execute("CHECKPOINT")
        db.execute("DELETE FROM online_endpoints WHERE name = 'leak'")
    assert b"LEAKED-VALUE" in on_disk(home)
    reg = Registry(home, KEY)
    try:
        assert reg._all("SELECT * FROM registry_tasks") == []
        assert [e.name for e in reg.list_endpoints()] == ["ep", "tok"]
    finally:
        reg.close()
    assert b"LEAKED-VALUE" not in on_disk(home)


# -- permissions ----------------------------------------------------------------------------


def test_a_new_home_is_private(tmp_path: Path) -> None:
    home = Home(tmp_path / "new" / "home")
    home.lock()
    try:
        home.admin_token()
        home.signing_key()
        key = home.secret_key()
        home.announce("http://localhost:1")
        assert len(key) == 32 and home.secret_key() == key  # made once, then read
        assert mode(home.root) == 0o700
        for name in ("admin.token", "token.key", "secrets.key", "daemon.json", "daemon.lock"):
            assert mode(home.root / name) == 0o600, name
    finally:
        home.release()


def test_an_existing_home_is_tightened(tmp_path: Path) -> None:
    root = tmp_path / "home"
    (root / "logs" / "ep" / "blue").mkdir(parents=True)
    (root / "artifacts" / "sha256" / "abc").mkdir(parents=True)
    files = ["admin.token", "token.key", "daemon.json", "daemon.lock", "appliance.duckdb", "appliance.duckdb.wal",
             "logs/daemon.log", "logs/ep/blue/blue-1.log", "logs/ep/blue/build.log"]
    for name in files:
        (root / name).write_text("x\n")
        (root / name).chmod(0o644)
    (root / "artifacts" / "sha256" / "abc" / "model.onnx").write_text("m")
    (root / "artifacts" / "sha256" / "abc" / "model.onnx").chmod(0o644)
    for folder in (root, root / "logs", root / "logs" / "ep", root / "logs" / "ep" / "blue",
                   root / "artifacts" / "sha256" / "abc"):
        folder.chmod(0o755)
    Home(root).tighten()
    assert mode(root) == 0o700
    assert {name: mode(root / name) for name in files} == dict.fromkeys(files, 0o600)
    assert [mode(d) for d in (root / "logs", root / "logs" / "ep", root / "logs" / "ep" / "blue")] == [0o700] * 3
    # What containers' non-root users read through a bind mount keeps its modes.
    assert mode(root / "artifacts" / "sha256" / "abc") == 0o755
    assert mode(root / "artifacts" / "sha256" / "abc" / "model.onnx") == 0o644


def test_artifacts_stay_readable_under_the_daemons_umask(tmp_path: Path) -> None:
    """The daemon runs with umask 077 (so DuckDB's WAL, re-created at every checkpoint, is 0600):
    stored artifacts still keep their source's modes, for containers' non-root users."""
    src = tmp_path / "src" / "model"
    (src / "sub").mkdir(parents=True)
    (src / "model.onnx").write_bytes(b"m")
    (src / "sub" / "labels.txt").write_text("a\n")
    for path in (src, src / "sub"):
        path.chmod(0o755)
    for path in (src / "model.onnx", src / "sub" / "labels.txt"):
        path.chmod(0o644)
    previous = os.umask(0o077)
    try:
        store = ArtifactStore(tmp_path / "home" / "artifacts")
        art = store.put(src)
        file_art = store.put(src / "model.onnx")
    finally:
        os.umask(previous)
    folder = store.path(art.digest)
    assert mode(folder) == 0o755
    assert [mode(p) for p in (folder / "model", folder / "model" / "sub")] == [0o755, 0o755]
    assert [mode(p) for p in (folder / "model" / "model.onnx", folder / "model" / "sub" / "labels.txt")] == [0o644] * 2
    assert mode(store.path(file_art.digest)) == 0o755 and mode(store.path(file_art.digest) / "model.onnx") == 0o644
