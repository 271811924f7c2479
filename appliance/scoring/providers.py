"""Choose onnxruntime execution providers deliberately and quietly.

The GPU build lists CUDA as available even on a machine without a GPU, and asking for it there
prints a wall of errors; so CUDA is requested only when the driver answers with a device.
"""

from __future__ import annotations

import ctypes
import functools
import os

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


@functools.cache
def cuda_devices() -> int:
    """How many CUDA devices the driver reports (0 without a driver or a device)."""
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return 0
    count = ctypes.c_int(0)
    if lib.cuInit(0) != 0 or lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return 0
    return count.value


def choose(available: list[str], wanted: str | None = None) -> list[str]:
    """Providers to ask for, best first. `wanted` ("cpu" or "cuda") comes from
    APPLIANCE_EXECUTION_PROVIDER; without it CUDA is used when it is really usable."""
    wanted = (wanted or os.environ.get("APPLIANCE_EXECUTION_PROVIDER") or "auto").lower()
    if wanted not in {"auto", "cpu", "cuda"}:
        raise ValueError(f"APPLIANCE_EXECUTION_PROVIDER={wanted!r}: use auto, cpu or cuda")
    if wanted == "cpu":
        return [CPU]
    cuda_ok = CUDA in available and cuda_devices() > 0
    if wanted == "cuda" and not cuda_ok:
        raise RuntimeError("APPLIANCE_EXECUTION_PROVIDER=cuda but no usable CUDA device: "
                           f"providers built in: {available}, devices seen by the driver: {cuda_devices()}")
    return [CUDA, CPU] if cuda_ok else [CPU]
