"""What the supervisor needs from an instance's backend: a child process or a container."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from appliance.runtime.plan import LaunchPlan
from appliance.runtime.transport import HTTPClient


class Backend(Protocol):
    name: str
    plan: LaunchPlan
    log: Path
    client: HTTPClient
    tail: list[str]  # the last lines of output, for error reports

    @property
    def pid(self) -> int | None: ...

    @property
    def running(self) -> bool: ...

    @property
    def exit_code(self) -> int | None: ...

    async def start(self) -> None: ...

    async def wait(self) -> int: ...

    async def stop(self, grace: float = 5.0) -> None: ...

    async def probe(self, timeout: float) -> bool: ...

    def target(self, path: str) -> str:
        """The backend's own path for an Azure route (a custom image has its own scoring route)."""
        ...
