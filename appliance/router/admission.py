"""Admission: at most `limit` requests in flight per deployment; the rest wait, first come first
served, up to a deadline (Azure's max_concurrent_requests_per_instance × instance_count and
max_queue_wait_ms), then the caller answers 429."""

from __future__ import annotations

import asyncio
from collections import deque


class Gate:
    def __init__(self) -> None:
        self.in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    def admit(self, limit: int) -> bool:
        """A slot now, if one is free and nobody is queued for one: the common case, without the
        cost of a coroutine."""
        if self.in_flight < limit and not self._waiters:
            self.in_flight += 1
            return True
        return False

    async def wait(self, wait_seconds: float) -> bool:
        """Queue for a slot, first come first served, up to `wait_seconds` (after `admit` refused)."""
        if wait_seconds <= 0:
            return False
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(wait_seconds):
                await waiter
            return True
        except TimeoutError:
            if waiter.done() and not waiter.cancelled():
                return True  # a slot was handed over just as the deadline struck: keep it
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            return False

    def release(self) -> None:
        """Hand the slot to the longest waiter, or free it."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.in_flight -= 1
