"""The home folder ($APPLIANCE_HOME): where state lives, who owns it (one daemon), the admin token.

Shared by the daemon (which owns the home) and the client (which reads the token and the URL)."""

from __future__ import annotations

import fcntl
import json
import os
import secrets
from pathlib import Path
from typing import Any, TextIO

DEFAULT_HOME = "~/.appliance"


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
        self.root.mkdir(parents=True, exist_ok=True)
        handle = (self.root / "daemon.lock").open("a+")
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

    @staticmethod
    def _secret(path: Path) -> str:
        """Created once, readable by the owner only (0600)."""
        if path.exists():
            return path.read_text().strip()
        value = secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(value + "\n")
        return value

    def announce(self, url: str) -> None:
        self.daemon_file.write_text(json.dumps({"url": url, "pid": os.getpid()}) + "\n")

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
