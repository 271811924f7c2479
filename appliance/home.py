"""The home folder ($APPLIANCE_HOME): where state lives, who owns it (one daemon), the admin token.

Shared by the daemon (which owns the home) and the client (which reads the token and the URL).
Only its owner reads it: the folder is 0700, the daemon's own files 0600 (`tighten`)."""

from __future__ import annotations

import base64
import fcntl
import json
import os
from pathlib import Path
from typing import Any, TextIO

DEFAULT_HOME = "~/.appliance"
# The daemon's own files in the home, owner only. Not artifacts/ (containers' non-root users read them
# through bind mounts: the store keeps their modes), envs/ or cache/: the 0700 home keeps others out.
PRIVATE_FILES = ("admin.token", "token.key", "secrets.key", "daemon.json", "daemon.lock", "appliance.duckdb",
                 "appliance.duckdb.wal")


def resolve(home: str | os.PathLike[str] | None = None) -> Path:
    return Path(home or os.environ.get("APPLIANCE_HOME") or DEFAULT_HOME).expanduser().resolve()


class HomeBusy(RuntimeError):
    pass


class Home:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock: TextIO | None = None

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def token_file(self) -> Path:
        return self.root / "admin.token"

    @property
    def daemon_file(self) -> Path:
        return self.root / "daemon.json"

    def lock(self) -> None:
        """Take the home for this process, or say who has it."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        handle = os.fdopen(os.open(self.root / "daemon.lock", os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600), "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            info = read_daemon_file(self.root)
            who = f" (pid {info['pid']}, serving {info['url']})" if info else ""
            raise HomeBusy(f"another appliance daemon is already running on home {self.root}{who}; "
                           "stop it first, or start this one with --home DIR") from None
        self._lock = handle

    def admin_token(self) -> str:
        """The token the CLI and TUI present to the control API."""
        return self._secret(self.token_file)

    def signing_key(self) -> bytes:
        """The secret that signs endpoint tokens (auth_mode aml_token)."""
        return self._secret(self.root / "token.key").encode()

    def secret_key(self) -> bytes:
        """The 32-byte key that seals endpoint keys in the registry (AES-256-GCM): without this file, a
        copy of the database reveals none."""
        path = self.root / "secrets.key"
        key = base64.urlsafe_b64decode(self._secret(path) + "=")
        if len(key) != 32:
            raise ValueError(f"{path} does not hold a 32-byte key (base64url, 43 characters)")
        return key

    def tighten(self) -> None:
        """Owner only, whatever an earlier version left: the home 0700, the daemon's files 0600, logs/
        (folders 0700, files 0600). Links are left alone."""
        self.root.chmod(0o700)
        for name in PRIVATE_FILES:
            path = self.root / name
            if path.is_file() and not path.is_symlink():
                path.chmod(0o600)
        if self.logs.is_dir() and not self.logs.is_symlink():
            self.logs.chmod(0o700)
            for folder, dirs, files in os.walk(self.logs):
                for names, mode in ((dirs, 0o700), (files, 0o600)):
                    for entry in (os.path.join(folder, name) for name in names):
                        if not os.path.islink(entry):
                            os.chmod(entry, mode)

    @staticmethod
    def _secret(path: Path) -> str:
        """Created once, readable by the owner only (0600)."""
        if path.exists():
            return path.read_text().strip()
        import secrets  # here: the CLI, which only reads the home, starts faster without it

        value = secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(value + "\n")
        return value

    def announce(self, url: str) -> None:
        fd = os.open(self.daemon_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # one left by an earlier version
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps({"url": url, "pid": os.getpid()}) + "\n")

    def release(self) -> None:
        self.daemon_file.unlink(missing_ok=True)
        if self._lock:
            self._lock.close()
            self._lock = None


def read_daemon_file(root: Path) -> dict[str, Any] | None:
    try:
        return json.loads((root / "daemon.json").read_text())
    except (OSError, ValueError):
        return None
