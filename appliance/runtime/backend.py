"""What the supervisor needs from an instance's backend: a child process, a container, or the daemon itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from appliance.runtime.plan import LaunchPlan
from appliance.runtime.transport import RequestHeaders, Response


class Client(Protocol):
    """How the router and the probes talk to an instance: HTTP, or a call in this process."""

    async def request(self, method: str, target: str, body: bytes = b"", headers: RequestHeaders = (),
                      timeout: float | None = None) -> Response: ...


class Backend(Protocol):
    name: str
    plan: LaunchPlan
    log: Path
    tail: list[str]  # the last lines of output, for error reports

    @property
    def client(self) -> Client | None:
        """None only before an in-process instance has loaded its model. A read-only member, so an
        implementation's own client type (HTTPClient, DirectClient | None) satisfies it."""
        ...

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

    def details(self) -> dict[str, Any]:
        """What `deployment show` adds about this kind of instance (in process: how the model is called)."""
        ...

    def target(self, path: str) -> str:
        """The backend's own path for an Azure route (a custom image has its own scoring route)."""
        ...
