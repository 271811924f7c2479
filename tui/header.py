"""The header: the daemon's URL, home, version, Docker status, CPU and memory (`GET /api/v1/status`)."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Static

from tui.format import size


def status_line(status: dict[str, Any] | None, error: str | None, url: str, width: int = 200) -> Text:
    """Parts in order of importance; those that do not fit the width are left out (never wrapped)."""
    parts: list[tuple[str, str]] = []
    if status is None:
        parts = [(" appliance ", "bold"), (url + "  ", "cyan"),
                 (error or "connecting…", "bold red" if error else "dim")]
    else:
        docker = str(status.get("docker", ""))
        ok = docker.startswith("available")
        parts = [(f" appliance {status.get('version', '?')} ", "bold"), (f" {status.get('url', url)} ", "cyan"),
                 (" docker ", ""), ("✓" if ok else "✗", "green" if ok else "red"),
                 (f"  cpu {status.get('cpu_percent', 0):.0f}%  mem {size(status.get('memory_bytes'))} ", "")]
        if error:
            parts.append((f" {error}", "bold red"))
        parts.append((f" home {status.get('home', '?')} ", "dim"))
        parts.append(("  <?> help", "dim"))
    out = Text(no_wrap=True, overflow="ellipsis")
    for text, style in parts:
        if out.cell_len + len(text) > width and out.cell_len:
            continue
        out.append(text, style)
    return out


class StatusHeader(Static):
    DEFAULT_CSS = "StatusHeader { height: 1; background: $panel; }"

    def show(self, status: dict[str, Any] | None, error: str | None, url: str) -> None:
        self.update(status_line(status, error, url, self.app.size.width))
