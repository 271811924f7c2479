"""Pure formatting and parsing for the views (no Textual, no I/O): tested in tests/unit."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any


def bar(fraction: float, width: int) -> str:
    """A bar of `width` cells, filled to `fraction` (eighths for the last cell)."""
    fraction = min(max(fraction, 0.0), 1.0)
    eighths = round(fraction * width * 8)
    full, part = divmod(eighths, 8)
    partial = " ▏▎▍▌▋▊▉"[part] if part else ""
    return ("█" * full + partial).ljust(width, "░")[:width]


def ms(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1:
        return f"{value:.2f}ms"
    if value < 100:
        return f"{value:.1f}ms"
    if value < 10_000:
        return f"{value:.0f}ms"
    return f"{value / 1000:.1f}s"


def rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def size(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "K", "M", "G", "T"):
        if abs(n) < 1024 or unit == "T":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return "-"


def clock(at: float) -> str:
    """14:02:11.204 (local time)."""
    return time.strftime("%H:%M:%S", time.localtime(at)) + f".{int(at * 1000) % 1000:03d}"


def eta(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"


def parse_traffic(text: str) -> dict[str, int]:
    """`blue=90 green=10` (or commas) → {"blue": 90, "green": 10}; a bad pair raises ValueError."""
    out: dict[str, int] = {}
    for pair in re.split(r"[\s,]+", text.strip()):
        if not pair:
            continue
        name, sep, value = pair.partition("=")
        if not sep or not name or not value.strip().lstrip("-").isdigit():
            raise ValueError(f"expected NAME=PERCENT pairs, e.g. blue=90 green=10; got {pair!r}")
        out[name.strip()] = int(value)
    return out


def traffic_text(traffic: dict[str, int]) -> str:
    return " ".join(f"{k}={v}" for k, v in traffic.items())


@dataclass
class RequestFilter:
    """The request view's `/` filter: `deployment=blue status>=500 latency>10 words` (all must hold)."""

    deployment: str | None = None
    status: list[tuple[str, int]] = field(default_factory=list)
    latency: list[tuple[str, float]] = field(default_factory=list)
    words: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.deployment or self.status or self.latency or self.words)

    def matches(self, row: dict[str, Any], line: str) -> bool:
        if self.deployment is not None and (row.get("deployment") or "") != self.deployment:
            return False
        if any(not _compare(int(row.get("status") or 0), op, v) for op, v in self.status):
            return False
        if any(not _compare(float(row.get("latency_ms") or 0.0), op, v) for op, v in self.latency):
            return False
        low = line.lower()
        return all(w in low for w in self.words)


_OPS = {"=": lambda a, b: a == b, "==": lambda a, b: a == b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
        "<": lambda a, b: a < b, "<=": lambda a, b: a <= b, "!=": lambda a, b: a != b}


def _compare(a: float, op: str, b: float) -> bool:
    return bool(_OPS[op](a, b))


_TERM = re.compile(r"^(deployment|dep|status|latency|lat)(==|!=|>=|<=|=|>|<)(.+)$")


def parse_request_filter(text: str) -> RequestFilter:
    """Terms the filter does not understand are words to look for (case-insensitive)."""
    out = RequestFilter()
    for term in text.split():
        m = _TERM.match(term)
        if not m:
            out.words.append(term.lower())
            continue
        name, op, value = m.groups()
        try:
            if name in ("deployment", "dep"):
                out.deployment = value
            elif name == "status":
                if value.endswith("xx") and value[0].isdigit():  # status=5xx
                    base = int(value[0]) * 100
                    out.status += [(">=", base), ("<", base + 100)]
                else:
                    out.status.append((op, int(value)))
            else:
                out.latency.append((op, float(value.removesuffix("ms"))))
        except ValueError:
            out.words.append(term.lower())
    return out


def request_line(row: dict[str, Any]) -> str:
    """One line of the request tail (fixed columns, never wider than ~100 cells)."""
    dep = row.get("deployment") or "-"
    mirror = "  (mirror)" if row.get("mirrored") else ""
    return (f"{clock(float(row.get('at') or 0))}  {row.get('endpoint', ''):<14.14} {dep:<10.10} "
            f"{row.get('status', 0):>3}  {ms(row.get('latency_ms')):>8}  {size(row.get('bytes_in')):>6}→"
            f"{size(row.get('bytes_out')):<6}  {str(row.get('request_id') or '')[:8]}{mirror}")


def fit_columns(widths: list[tuple[str, int, int]], available: int, padding: int = 2) -> list[str]:
    """Which columns fit in `available` cells: (key, width, drop) in display order, where columns with the
    highest `drop` go first (0: never dropped). Returns the kept keys, still in display order."""
    kept = list(widths)
    while sum(w + padding for _, w, _ in kept) > available:
        droppable = [c for c in kept if c[2] > 0]
        if not droppable:
            break
        kept.remove(max(droppable, key=lambda c: c[2]))
    return [k for k, _, _ in kept]


def fit_hints(hints: list[tuple[str, str]], width: int) -> str:
    """`<key>label` hints, as many whole ones as fit in `width`."""
    out = ""
    for key, label in hints:
        item = f"<{key}>{label}"
        if len(out) + len(item) + (2 if out else 0) > width:
            break
        out += ("  " if out else "") + item
    return out
