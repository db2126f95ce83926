"""The bodies of the requests whose rows are in the drift window, by inference id, as their
clients sent them: what ``GET /requests/{id}`` answers, to explain one later. Bounded twice: a
body leaves with the last of its rows (the window's size in rows), and the bodies together
stay under ``KEPT_TOTAL_BYTES`` (the oldest leave first). A body over ``KEPT_REQUEST_BYTES`` is
not kept, nor one that gave no rows."""

from __future__ import annotations

import json
from collections import OrderedDict, deque
from collections.abc import Mapping
from typing import Any

KEPT_REQUEST_BYTES = 64 * 1024
KEPT_TOTAL_BYTES = 64 * 1024 * 1024


class KeptRequests:
    """Not thread-safe: the monitor calls it under its lock."""

    def __init__(self, rows: int, max_bytes: int = KEPT_TOTAL_BYTES) -> None:
        self.rows = rows
        self.max_bytes = max_bytes
        self._ids: deque[str] = deque()  # the id of each row in the window, oldest first
        self._count: dict[str, int] = {}  # rows in the window per id
        self._bodies: OrderedDict[str, tuple[Mapping[str, Any], int]] = OrderedDict()
        self.bytes = 0

    def add(self, event_id: str, body: Mapping[str, Any], rows: int, size: int = 0) -> None:
        """A request's ``rows`` entered the window (the oldest rows left it); ``size`` is its
        body's length in bytes (measured here when 0)."""
        for _ in range(rows):
            self._ids.append(event_id)
            self._count[event_id] = self._count.get(event_id, 0) + 1
        while len(self._ids) > self.rows:
            old = self._ids.popleft()
            left = self._count[old] - 1
            if left:
                self._count[old] = left
            else:
                del self._count[old]
                self._drop(old)
        self._drop(event_id)  # an id sent again: its newer body, or none
        size = size or len(json.dumps(body, default=str))
        if rows and size <= KEPT_REQUEST_BYTES and event_id in self._count:
            self._bodies[event_id] = (body, size)
            self.bytes += size
            while self.bytes > self.max_bytes:
                self._drop(next(iter(self._bodies)))

    def _drop(self, event_id: str) -> None:
        entry = self._bodies.pop(event_id, None)
        if entry is not None:
            self.bytes -= entry[1]

    def get(self, event_id: str) -> Mapping[str, Any] | None:
        entry = self._bodies.get(event_id)
        return entry[0] if entry else None

    def __len__(self) -> int:
        return len(self._bodies)
