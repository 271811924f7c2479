"""The artifact store with real files: symbolic links inside a registered folder (copied when they stay
inside it, refused when they leave it, dangle or loop), and digests that always name the bytes stored."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from appliance.registry import ArtifactStore, artifacts, digest_of
from appliance.specs import SpecError


@pytest.fixture
def store(home: Path) -> ArtifactStore:
    return ArtifactStore(home / "artifacts")


def nothing_stored(store: ArtifactStore, home: Path) -> bool:
    root = home / "artifacts"
    return not store.digests() and not list(root.glob(".staging-*"))


def stored_is_named_by_its_digest(store: ArtifactStore, art: artifacts.Artifact) -> bool:
    return digest_of(store.path(art.digest) / art.name) == (art.digest, art.size, art.files)


# -- links that leave the folder ------------------------------------------------------------


def test_link_to_a_file_outside_is_refused_naming_link_and_target(store: ArtifactStore, home: Path,
                                                                    model_dir: Path, tmp_path: Path) -> None:
    secret = tmp_path / "shadow"
    secret.write_text("root:*:19000:0:99999:7:::\n")
    (model_dir / "sub" / "shadow").symlink_to(secret)
    with pytest.raises(SpecError) as info:
        store.put(model_dir)
    assert "'sub/shadow'" in info.value.message
    assert repr(str(secret)) in info.value.message
    assert "outside" in info.value.message
    assert info.value.source == str(model_dir)
    assert info.value.status == 400
    assert nothing_stored(store, home)


def test_relative_link_to_a_folder_outside_is_refused(store: ArtifactStore, home: Path, model_dir: Path,
                                                       tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("root:x:0:0\n")
    (model_dir / "etc").symlink_to(Path("..", "..", "etc"), target_is_directory=True)
    with pytest.raises(SpecError) as info:
        store.put(model_dir)
    assert "'etc'" in info.value.message and repr(str(tmp_path / "etc")) in info.value.message
    assert nothing_stored(store, home)


def test_absolute_system_link_is_refused(store: ArtifactStore, home: Path, model_dir: Path) -> None:
    (model_dir / "passwd").symlink_to("/etc/passwd")
    with pytest.raises(SpecError, match="symbolic link 'passwd' points to '/etc/passwd'"):
        store.put(model_dir)
    assert nothing_stored(store, home)


# -- dangling links and loops ----------------------------------------------------------------


def test_dangling_link_is_refused_naming_it(store: ArtifactStore, home: Path, model_dir: Path) -> None:
    (model_dir / "sub" / "gone.onnx").symlink_to(model_dir / "nothing-here")
    with pytest.raises(SpecError) as info:
        store.put(model_dir)
    assert "'sub/gone.onnx'" in info.value.message and "dangling" in info.value.message
    assert nothing_stored(store, home)


def test_link_loop_is_refused_naming_it(store: ArtifactStore, home: Path, model_dir: Path) -> None:
    (model_dir / "a").symlink_to(model_dir / "b")
    (model_dir / "b").symlink_to(model_dir / "a")
    with pytest.raises(SpecError) as info:
        store.put(model_dir)
    assert "'a'" in info.value.message and "loop" in info.value.message
    assert nothing_stored(store, home)


@pytest.mark.parametrize("target", [".", "..", "../sub"])
def test_link_to_a_folder_that_contains_it_is_refused_as_a_loop(store: ArtifactStore, home: Path,
                                                                model_dir: Path, target: str) -> None:
    (model_dir / "sub" / "up").symlink_to(target, target_is_directory=True)
    with pytest.raises(SpecError) as info:
        store.put(model_dir)
    assert "'sub/up'" in info.value.message and "loop" in info.value.message
    assert nothing_stored(store, home)


# -- links that stay inside -------------------------------------------------------------------


def test_links_inside_the_folder_are_stored_as_copies(store: ArtifactStore, model_dir: Path,
                                                      tmp_path: Path) -> None:
    (model_dir / "latest.onnx").symlink_to("model.onnx")
    (model_dir / "labels").symlink_to("sub", target_is_directory=True)
    art = store.put(model_dir)
    stored = store.path(art.digest) / "iris-model"
    for name in ("latest.onnx", "labels", "labels/labels.txt"):
        assert not (stored / name).is_symlink()
    assert (stored / "latest.onnx").read_bytes() == b"onnx-bytes"
    assert (stored / "labels" / "labels.txt").read_text() == "setosa\nversicolor\nvirginica\n"
    assert (art.files, art.size) == (4, 2 * (10 + 28))
    # The same as a folder holding real copies.
    copy = tmp_path / "copy" / "iris-model"
    (copy / "sub").mkdir(parents=True)
    (copy / "labels").mkdir()
    for name in ("model.onnx", "latest.onnx"):
        (copy / name).write_bytes(b"onnx-bytes")
    for name in ("sub", "labels"):
        (copy / name / "labels.txt").write_text("setosa\nversicolor\nvirginica\n")
    assert store.put(copy).digest == art.digest


def test_registered_path_that_is_a_link_is_resolved_first(store: ArtifactStore, model_dir: Path,
                                                           tmp_path: Path) -> None:
    link = tmp_path / "current"
    link.symlink_to(model_dir, target_is_directory=True)
    file_link = tmp_path / "model-link.onnx"
    file_link.symlink_to(model_dir / "model.onnx")
    folder, file = store.put(link), store.put(file_link)
    assert folder.digest == store.put(model_dir).digest and folder.name == "iris-model"
    assert (file.name, file.files) == ("model.onnx", 1)
    assert (store.path(file.digest) / "model.onnx").read_bytes() == b"onnx-bytes"


def test_pycache_is_skipped_and_modes_kept(store: ArtifactStore, model_dir: Path) -> None:
    (model_dir / "__pycache__").mkdir()
    (model_dir / "__pycache__" / "x.pyc").write_bytes(b"pyc")
    (model_dir / "run.sh").write_text("#!/bin/sh\n")
    (model_dir / "run.sh").chmod(0o755)
    art = store.put(model_dir)
    stored = store.path(art.digest)
    assert not (stored / "iris-model" / "__pycache__").exists()
    assert os.access(stored / "iris-model" / "run.sh", os.X_OK)
    assert stat.S_IMODE(stored.stat().st_mode) == 0o755
    assert stored_is_named_by_its_digest(store, art)


def test_fifo_in_a_folder_is_refused(store: ArtifactStore, home: Path, model_dir: Path) -> None:
    os.mkfifo(model_dir / "pipe")
    with pytest.raises(SpecError, match="'pipe' is not a regular file or a folder"):
        store.put(model_dir)
    assert nothing_stored(store, home)


# -- the digest names the bytes stored --------------------------------------------------------


def test_file_edited_while_stored_is_stored_under_the_digest_of_what_was_stored(
        store: ArtifactStore, model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A user saving a file while it is registered: whichever bytes land in the store, the digest is theirs."""
    real_sha256 = artifacts.hashlib.sha256
    edits = iter([b"retrained-1", b"retrained-2", b"retrained-3", b"retrained-4"])

    def sha256_then_edit(*args: bytes) -> object:
        # Every hash the store starts is followed by a save in the user's folder.
        (model_dir / "model.onnx").write_bytes(next(edits, b"retrained-n"))
        return real_sha256(*args)

    monkeypatch.setattr(artifacts.hashlib, "sha256", sha256_then_edit)
    art = store.put(model_dir)
    monkeypatch.undo()
    assert stored_is_named_by_its_digest(store, art)
    # Storing the folder as it is now gives the digest of those bytes, stored once.
    again = store.put(model_dir)
    assert stored_is_named_by_its_digest(store, again)


def test_identical_content_is_stored_once_and_staging_is_cleaned(store: ArtifactStore, home: Path,
                                                                  model_dir: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    first = store.put(model_dir)

    def no_copy(*_: object, **__: object) -> str:
        raise AssertionError("content already stored is not copied again")

    monkeypatch.setattr(artifacts.tempfile, "mkdtemp", no_copy)
    second = store.put(model_dir)
    assert (first.created, second.created) == (True, False)
    assert first == artifacts.Artifact(first.digest, "iris-model", 38, 2, True)
    assert second.digest == first.digest == digest_of(model_dir)[0]
    assert not list((home / "artifacts").glob(".staging-*"))
