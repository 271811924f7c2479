"""Content-addressed artifact store: `artifacts/sha256/<digest>/<name>` where name is the file or
folder the content was registered from (Azure keeps that name beneath AZUREML_MODEL_DIR)."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Artifact:
    digest: str
    name: str
    size: int
    files: int
    created: bool  # False when identical content was already stored


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _walk(src: Path) -> list[Path]:
    if src.is_file():
        return [src]
    return sorted(p for p in src.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def digest_of(src: Path) -> tuple[str, int, int]:
    """(digest, bytes, files) of a file or a folder, over names, modes and contents."""
    src = src.resolve()
    manifest = hashlib.sha256(src.name.encode() + b"\0")
    size = 0
    files = _walk(src)
    for f in files:
        rel = f.relative_to(src).as_posix() if src.is_dir() else ""
        executable = os.access(f, os.X_OK)
        manifest.update(f"{rel}\0{int(executable)}\0{_file_sha256(f)}\n".encode())
        size += f.stat().st_size
    return manifest.hexdigest(), size, len(files)


class ArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._stored = root / "sha256"  # one folder per digest
        self._stored.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        """The folder holding the stored file or folder (itself under its original name)."""
        return self._stored / digest

    def put(self, src: Path) -> Artifact:
        src = src.resolve()
        digest, size, files = digest_of(src)
        dest = self.path(digest)
        if dest.exists():
            return Artifact(digest, src.name, size, files, created=False)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.root))
        staging.chmod(0o755)  # mkdtemp's 0700 would hide the content from containers' non-root users
        try:
            if src.is_dir():
                shutil.copytree(src, staging / src.name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(src, staging / src.name)
            os.rename(staging, dest)
        except FileExistsError:  # a concurrent put of the same content won
            shutil.rmtree(staging, ignore_errors=True)
            return Artifact(digest, src.name, size, files, created=False)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return Artifact(digest, src.name, size, files, created=True)

    def discard(self, digest: str) -> None:
        shutil.rmtree(self.path(digest), ignore_errors=True)

    def digest_at(self, path: str) -> str | None:
        """The digest of the artifact that `path` lies in, None if it is not in this store."""
        where = Path(path)
        inside = where.is_relative_to(self._stored) and where != self._stored
        return where.relative_to(self._stored).parts[0] if inside else None

    def digests(self) -> set[str]:
        """Every artifact on disk."""
        return {p.name for p in self._stored.iterdir()}

    def discard_staging(self) -> None:
        """Copies that an interrupted `put` left half done (only safe while no put is running)."""
        for staging in self.root.glob(".staging-*"):
            shutil.rmtree(staging, ignore_errors=True)
