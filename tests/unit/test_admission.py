"""Admission's gate, on a real event loop: waiters are woken oldest first, a wait ends at its
deadline, and a newcomer is never queued behind a slot that is free."""

from __future__ import annotations

import asyncio

from appliance.router.admission import Gate


async def _request(gate: Gate, limit: int, served: list[int], i: int, wait: float = 5.0) -> bool:
    """Admission, then synchronous work (as an in-process model's call), then release."""
    if not gate.admit(limit) and not await gate.wait(limit, wait):
        return False
    served.append(i)
    gate.release()
    return True


def test_waiters_are_served_oldest_first() -> None:
    async def scenario() -> list[int]:
        gate, served = Gate(), []
        assert gate.admit(1)
        waiting = [asyncio.create_task(_request(gate, 1, served, i)) for i in range(5)]
        await asyncio.sleep(0)
        gate.release()
        await asyncio.gather(*waiting)
        assert gate.in_flight == 0
        return served

    assert asyncio.run(scenario()) == [0, 1, 2, 3, 4]


def test_a_wait_ends_at_its_deadline_and_leaves_no_trace() -> None:
    async def scenario() -> None:
        gate, served = Gate(), []
        assert gate.admit(1)
        assert not await _request(gate, 1, served, 0, wait=0.05)
        assert not await _request(gate, 1, served, 1, wait=0)  # no queue wait allowed: refused at once
        gate.release()
        assert await _request(gate, 1, served, 2, wait=0.05) and served == [2] and gate.in_flight == 0

    asyncio.run(scenario())


def test_newcomers_take_a_free_slot_while_earlier_requests_are_still_queued() -> None:
    """The convoy this prevents: a queue formed once (a slow first call), every newcomer queued behind it
    and a model that answers within the call served one request per turn of the event loop."""
    async def scenario() -> None:
        gate, served = Gate(), []
        assert gate.admit(1)  # a slow first call holds the only slot
        queued = [asyncio.create_task(_request(gate, 1, served, i)) for i in range(20)]
        await asyncio.sleep(0)
        gate.release()
        for turn in range(5):  # ten new requests a turn, each answered within its own turn
            newcomers = [asyncio.create_task(_request(gate, 1, served, 100 + 10 * turn + j)) for j in range(10)]
            await asyncio.sleep(0)
            assert all(t.done() and t.result() for t in newcomers)
        assert all(await asyncio.gather(*queued))
        assert sorted(served) == [*range(20), *range(100, 150)] and gate.in_flight == 0

    asyncio.run(scenario())


def test_a_waiter_woken_as_its_deadline_strikes_passes_the_slot_on() -> None:
    async def scenario() -> None:
        gate = Gate()
        assert gate.admit(1)
        first = asyncio.create_task(gate.wait(1, 5))
        second = asyncio.create_task(gate.wait(1, 5))
        await asyncio.sleep(0)
        gate.release()  # wakes `first`...
        first.cancel()  # ...which leaves before it runs (its caller gave up)
        assert await second and gate.in_flight == 1

    asyncio.run(scenario())


def test_a_waiter_is_passed_over_once_at_most() -> None:
    """A newcomer may take the slot a woken waiter was about to take, once; then newcomers queue behind
    that waiter. Else, with requests that hold their slot across a wait (a worker process's answer), a
    newcomer arriving with each answer passed the same waiter again and again."""
    async def take(gate: Gate, served: list[str], name: str) -> None:  # and hold the slot
        if not gate.admit(1):
            assert await gate.wait(1, 5)
        served.append(name)

    async def scenario() -> list[str]:
        gate, served = Gate(), []
        assert gate.admit(1)  # a request in flight
        waiter = asyncio.create_task(take(gate, served, "waiter"))
        await asyncio.sleep(0)  # queued behind it
        newcomers = []
        for i in range(3):
            newcomers.append(asyncio.create_task(take(gate, served, f"new{i}")))  # arrives as...
            gate.release()  # ...the request holding the slot answers, which wakes the longest waiter
            await asyncio.sleep(0)
            await asyncio.sleep(0)
        for _ in range(2):  # the rest answer
            gate.release()
            await asyncio.sleep(0)
            await asyncio.sleep(0)
        await asyncio.gather(waiter, *newcomers)
        assert gate.in_flight == 0
        return served

    served = asyncio.run(scenario())
    assert served[:2] == ["new0", "waiter"] and sorted(served) == ["new0", "new1", "new2", "waiter"]
