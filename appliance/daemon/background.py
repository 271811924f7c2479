"""A pool for the control plane's heavy work — hashing and copying what is registered, reading a model's
signature, building environments — whose threads run at a lower CPU priority than the event loop's, so
that on a busy machine serving comes first (the request log's writer does the same). A model that will
serve is not loaded here: its onnxruntime threads would inherit the priority."""

from __future__ import annotations

import asyncio
import functools
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

NICE = 10
T = TypeVar("T")


def _lower_priority() -> None:
    if sys.platform == "linux":  # there a thread has a nice value of its own
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)


_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="appliance-control", initializer=_lower_priority)


async def run(fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(_POOL, functools.partial(fn, *args))
