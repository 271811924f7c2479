"""Content-addressed artifact store: `artifacts/sha256/<digest>/<name>` where name is the file or
folder the content was registered from (Azure keeps that name beneath AZUREML_MODEL_DIR)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import tempfile
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from appliance.specs import SpecError

_CHUNK = 1 << 20
_TOP = PurePosixPath()  # the path inside an artifact of a single file


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


def _manifest(name: str, entries: list[tuple[PurePosixPath, bool, str]]) -> str:
    """The digest of a file or folder called `name` from its files: (path inside, executable, sha256);
    a single file's path is empty."""
    manifest = hashlib.sha256(name.encode() + b"\0")
    for rel, executable, sha in sorted(entries, key=lambda e: e[0].parts):
        manifest.update(f"{'' if rel == _TOP else rel.as_posix()}\0{int(executable)}\0{sha}\n".encode())
    return manifest.hexdigest()


def digest_of(src: Path) -> tuple[str, int, int]:
    """(digest, bytes, files) of a file or a folder, over names, modes and contents."""
    src = src.resolve()
    entries: list[tuple[PurePosixPath, bool, str]] = []
    size = 0
    files = _walk(src)
    for f in files:
        rel = PurePosixPath(f.relative_to(src).as_posix()) if src.is_dir() else _TOP
        entries.append((rel, os.access(f, os.X_OK), _file_sha256(f)))
        size += f.stat().st_size
    return _manifest(src.name, entries), size, len(files)


def _inside(src: Path, rel: PurePosixPath) -> str:
    return src.name if rel == _TOP else rel.as_posix()


def _link_error(src: Path, rel: PurePosixPath, message: str) -> SpecError:
    return SpecError(f"symbolic link {rel.as_posix()!r} {message}", source=str(src))


def _read_error(src: Path, rel: PurePosixPath, exc: OSError) -> SpecError:
    return SpecError(f"cannot read {_inside(src, rel)!r}: {exc.strerror or exc}", source=str(src))


def _copy_file(src: Path, rel: PurePosixPath, origin: Path, dest: Path | None) -> tuple[str, int, bool]:
    """Copies the regular file `origin` (no link: resolved already) to `dest`, hashing the bytes written
    (with no `dest`, only hashes). Returns (sha256, size, executable) of the copy (or of `origin`)."""
    try:
        fd = os.open(origin, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise _read_error(src, rel, exc) from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # swapped for something else since it was looked at
            raise SpecError(f"{_inside(src, rel)!r} is not a regular file or a folder", source=str(src))
        h = hashlib.sha256()
        size = 0
        with dest.open("xb") if dest is not None else contextlib.nullcontext() as out:
            while True:
                try:
                    chunk = f.read(_CHUNK)
                except OSError as exc:
                    raise _read_error(src, rel, exc) from None
                if not chunk:
                    break
                h.update(chunk)
                if out is not None:
                    out.write(chunk)
                size += len(chunk)
    if dest is None:
        return h.hexdigest(), size, os.access(origin, os.X_OK)
    os.chmod(dest, stat.S_IMODE(st.st_mode))
    os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns))
    return h.hexdigest(), size, os.access(dest, os.X_OK)


def _copy(src: Path, dest: Path | None) -> tuple[str, int, int]:
    """Copies the file or folder `src` (resolved) to `dest` and returns (digest, bytes, files) of what
    was written (with no `dest`, of `src` as read). In a folder, `__pycache__` is skipped; a symbolic link
    that stays inside `src` is stored as a copy of its target; one that leads outside, dangles or loops is
    refused (a SpecError)."""
    entries: list[tuple[PurePosixPath, bool, str]] = []
    size = 0
    if not src.is_dir():
        if not src.exists():
            raise SpecError("the path does not exist", source=str(src))
        sha, size, executable = _copy_file(src, _TOP, src, dest)
        return _manifest(src.name, [(_TOP, executable, sha)]), size, 1
    # (real folder to read, its path inside the artifact, the real folders it lies in: a link back is a loop)
    pending: list[tuple[Path, PurePosixPath, tuple[Path, ...]]] = [(src, _TOP, (src,))]
    folders: list[tuple[Path, Path]] = []  # (origin, copy): modes and times set last
    if dest is not None:
        dest.mkdir()
        folders.append((src, dest))
    while pending:
        folder, rel_folder, ancestors = pending.pop()
        try:
            children = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            raise _read_error(src, rel_folder, exc) from None
        for child in children:
            if child.name == "__pycache__":
                continue
            rel = rel_folder / child.name
            origin = Path(child.path)
            if child.is_symlink():
                try:
                    origin = origin.resolve(strict=True)
                except FileNotFoundError:
                    raise _link_error(src, rel, f"is dangling: {os.readlink(child.path)!r} does not exist") from None
                except (OSError, RuntimeError):  # ELOOP (RuntimeError before Python 3.13)
                    raise _link_error(src, rel, "is a loop of links") from None
                if not origin.is_relative_to(src):
                    raise _link_error(src, rel, f"points to {str(origin)!r}, outside the folder being registered; "
                                                "copy the file into the folder instead")
                if origin in ancestors:
                    raise _link_error(src, rel, f"points to {str(origin)!r}, a folder that contains it: a loop")
            target = dest / rel.as_posix() if dest is not None else None
            try:
                st = origin.stat()
            except OSError as exc:
                raise _read_error(src, rel, exc) from None
            if stat.S_ISDIR(st.st_mode):
                if target is not None:
                    target.mkdir()
                    folders.append((origin, target))
                pending.append((origin, rel, (*ancestors, origin)))
            elif stat.S_ISREG(st.st_mode):
                sha, n, executable = _copy_file(src, rel, origin, target)
                entries.append((rel, executable, sha))
                size += n
            else:
                raise SpecError(f"{rel.as_posix()!r} is not a regular file or a folder", source=str(src))
    for origin, target in reversed(folders):  # innermost first: a read-only folder is filled already
        shutil.copystat(origin, target)
    return _manifest(src.name, entries), size, len(entries)


class ArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._stored = root / "sha256"  # one folder per digest
        self._stored.mkdir(parents=True, exist_ok=True)
        # A put copies and hashes without any lock, so several run at once and none holds up the
        # registry; what it stored stays pinned, safe from `sweep`, until its caller has written the
        # row that refers to it (or given up) and calls `unpin`.
        self._lock = threading.Lock()
        self._pins: Counter[str] = Counter()
        self._putting = 0

    def path(self, digest: str) -> Path:
        """The folder holding the stored file or folder (itself under its original name)."""
        return self._stored / digest

    def put(self, src: Path) -> Artifact:
        """Stores a file or folder (a link given here is followed first): copied into staging while
        hashed, so the digest names exactly the bytes stored even if the source changes meanwhile."""
        src = src.resolve()
        digest, size, files = _copy(src, None)  # as it reads now: stored already, nothing to copy
        if self._pin_if_stored(digest):
            return Artifact(digest, src.name, size, files, created=False)
        with self._lock:
            self._putting += 1
        try:
            staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.root))
            staging.chmod(0o755)  # mkdtemp's 0700 would hide the content from containers' non-root users
            try:
                digest, size, files = _copy(src, staging / src.name)
                with self._lock:
                    created = not self.path(digest).exists()
                    if created:
                        os.rename(staging, self.path(digest))
                    self._pins[digest] += 1
            finally:
                shutil.rmtree(staging, ignore_errors=True)  # gone already once renamed
        finally:
            with self._lock:
                self._putting -= 1
        return Artifact(digest, src.name, size, files, created=created)

    def _pin_if_stored(self, digest: str) -> bool:
        with self._lock:
            if self.path(digest).exists():
                self._pins[digest] += 1
                return True
        return False

    def unpin(self, digest: str) -> None:
        with self._lock:
            self._pins[digest] -= 1
            if self._pins[digest] <= 0:
                del self._pins[digest]

    def pinned(self) -> set[str]:
        with self._lock:
            return set(self._pins)

    def sweep(self, keep: Callable[[], set[str]]) -> set[str]:
        """Remove every stored artifact not in `keep()` (called under this store's lock) and not pinned by
        a put whose row is not written yet, and the staging folders of interrupted puts; the digests removed."""
        with self._lock:
            unused = self.digests() - keep() - set(self._pins)
            for digest in unused:
                self.discard(digest)
            if not self._putting:
                for staging in self.root.glob(".staging-*"):
                    shutil.rmtree(staging, ignore_errors=True)
        return unused

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

