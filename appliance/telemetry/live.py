"""The newest request events, for live views (the TUI's request tail): a ring the data plane appends
to, read by sequence number. It exists from the first reader on: a daemon nobody watches pays nothing.

Appends and reads both happen on the event loop, so `seq` and the ring always agree."""

from __future__ import annotations

from collections import deque
from itertools import islice
from typing import Any

from appliance.telemetry.events import FIELDS, RequestEvent, rows

RING = 65_536  # at 2,000 requests/s, half a minute: a reader polling a few times a second never falls behind


class LiveTap:
    def __init__(self, size: int = RING) -> None:
        self.ring: deque[RequestEvent] = deque(maxlen=size)
        self.seq = 0  # events appended since the tap exists

    def append(self, event: RequestEvent) -> None:
        self.ring.append(event)
        self.seq += 1

    def since(self, after: int | None, endpoint: str | None = None,
              limit: int = 5_000) -> tuple[int, int, list[dict[str, Any]]]:
        """(the sequence number to ask after next time, events missed since `after` (the ring moved past
        them, or more than `limit` came), the rows after `after`, oldest first); `after` None is "from now"."""
        first = self.seq - len(self.ring)  # the sequence number of the oldest event held
        if after is None or after > self.seq:  # (a larger one: an earlier daemon's)
            return self.seq, 0, []
        start = max(after, first)
        missed = start - after
        count = self.seq - start
        if count > limit:
            missed += count - limit
            start = self.seq - limit
        events = list(islice(self.ring, start - first, None))
        found = [dict(zip(FIELDS, row, strict=True)) for row in rows(events)]
        if endpoint is not None:
            found = [r for r in found if r["endpoint"] == endpoint]
        return self.seq, missed, found
