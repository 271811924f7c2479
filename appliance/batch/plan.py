"""Pure rules of a batch job: which files, split how, how many workers, when it has failed."""

from __future__ import annotations

import os
from pathlib import Path

from appliance.specs import SpecError


def input_files(path: Path, type_: str) -> list[str]:
    """The files a job scores, in a stable order: a uri_file is itself; a uri_folder is every file under it
    (Azure's file datasets recurse), hidden ones (`.DS_Store`, `.ipynb_checkpoints/`) left out."""
    if type_ == "uri_file":
        if not path.is_file():
            raise SpecError(f"input {str(path)!r} is not a file, and input_type is uri_file", field="input")
        return [str(path)]
    if not path.is_dir():
        hint = "; for one file use --input-type uri_file" if path.is_file() else ""
        raise SpecError(f"input {str(path)!r} is not a folder{hint}", field="input")
    found: list[str] = []
    for root, folders, files in os.walk(path):
        folders[:] = sorted(f for f in folders if not f.startswith("."))
        found += [os.path.join(root, f) for f in sorted(files) if not f.startswith(".")]
    if not found:
        raise SpecError(f"input folder {str(path)!r} holds no file to score", field="input")
    return found


def mini_batches(files: list[str], size: int) -> list[list[str]]:
    """Work splits by file count, `mini_batch_size` files to a run() call."""
    return [files[i:i + size] for i in range(0, len(files), size)]


def worker_count(instance_count: int, max_concurrency_per_instance: int, mini_batch_count: int) -> int:
    """`instance_count × max_concurrency_per_instance` processes, but never more than there is work for."""
    return max(1, min(instance_count * max_concurrency_per_instance, mini_batch_count))


def over_threshold(failed_items: int, error_threshold: int) -> bool:
    """Whether the job fails: more failed items than `error_threshold` tolerates (-1 tolerates all)."""
    return error_threshold != -1 and failed_items > error_threshold
