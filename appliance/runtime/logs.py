"""Reading the instances' captured output (`logs/<endpoint>/<deployment>/<instance>.log`), for
`appliance deployment logs`: merged by time, filtered, tailed, and followed with a cursor."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

Cursor = dict[str, int]  # file name → bytes already read


def line(stream: str, text: str) -> str:
    """One log line as every writer writes it: `<UTC time> <stream> <text>`."""
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return f"{stamp} {stream} {text}\n"


def read(folder: Path, *, instance: str | None = None, since: str | None = None, tail: int | None = None,
         cursor: Cursor | None = None) -> tuple[list[dict[str, Any]], Cursor]:
    """Lines as {instance, at, stream, text}, oldest first, and the cursor to continue from.

    `instance` is an instance name (blue-3) or its number (3); `since` an ISO time; with a cursor,
    only what was written after it."""
    files = sorted(folder.glob("*.log")) if folder.is_dir() else []
    if instance is not None:
        wanted = instance if not instance.isdigit() else None
        files = [f for f in files if f.stem == wanted or (wanted is None and f.stem.rsplit("-", 1)[-1] == instance)]
    lines: list[dict[str, Any]] = []
    after: Cursor = {}
    for path in files:
        start = (cursor or {}).get(path.name, 0)
        with path.open("rb") as f:
            f.seek(start)
            data = f.read()
        complete = data[: data.rfind(b"\n") + 1]  # a line still being written waits for the next read
        after[path.name] = start + len(complete)
        for raw in complete.decode(errors="replace").splitlines():
            at, _, rest = raw.partition(" ")
            stream, _, text = rest.partition(" ")
            if since is None or at >= since:
                lines.append({"instance": path.stem, "at": at, "stream": stream, "text": text})
    lines.sort(key=lambda line: line["at"])
    if tail is not None:
        lines = lines[-tail:] if tail > 0 else []
    return lines, after
