"""Hot reload: saving a file in a deployment's code folder replaces its instances (new ones ready
before the old ones drain; if the new code fails, the old instances keep serving).

On for every deployment with `appliance up --watch`, or per deployment with `watch: true`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from watchfiles import awatch

from appliance.daemon.control import Control

log = logging.getLogger("appliance.reload")


class HotReload:
    def __init__(self, control: Control, everything: bool) -> None:
        self.control = control
        self.everything = everything
        self._watched: dict[Path, set[tuple[str, str]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    async def sync(self) -> None:
        """Watch exactly the code folders of the deployments that want it (after every change)."""
        wanted = await asyncio.to_thread(self._wanted)
        if wanted == self._watched:
            return
        self._watched = wanted
        self._restart()

    def _wanted(self) -> dict[Path, set[tuple[str, str]]]:
        wanted: dict[Path, set[tuple[str, str]]] = {}
        for rec in self.control.registry.list_deployments():
            code = rec.spec.code_configuration
            if code and (self.everything or rec.spec.watch) and Path(code.code).is_dir():
                wanted.setdefault(Path(code.code), set()).add(rec.key)
        return wanted

    def _restart(self) -> None:
        if self._task:
            self._stop.set()
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._run(dict(self._watched), self._stop)) if self._watched else None

    async def _run(self, watched: dict[Path, set[tuple[str, str]]], stop: asyncio.Event) -> None:
        async for changes in awatch(*watched, debounce=50, step=20, stop_event=stop, recursive=True):
            touched = {key for path, keys in watched.items() for _, changed in changes
                       if Path(changed).is_relative_to(path) and "__pycache__" not in changed for key in keys}
            for endpoint, name in sorted(touched):
                log.info("code of %s/%s changed: replacing its instances", endpoint, name)
                try:
                    await self.control.update_deployment(endpoint, name, {}, wait=0)
                except Exception:
                    log.exception("hot reload of %s/%s failed", endpoint, name)

    async def close(self) -> None:
        self._stop.set()
        if self._task:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
