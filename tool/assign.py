"""Which items sit in open labelling sessions (`Outstanding`), so that 20 people starting at once
do not all get the same least-annotated items; entries expire, so an abandoned browser frees
them. The planning rules themselves are `annotations.planner`'s.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass
class Outstanding:
    """Items in open sessions, per annotator, with an expiry (thread-safe; one per app)."""

    ttl_s: float = 1800.0
    _held: dict[str, dict[str, float]] = field(default_factory=dict)  # generation -> who -> since
    lock: threading.RLock = field(default_factory=threading.RLock)

    def counts(self, exclude: str | None = None) -> dict[str, int]:
        with self.lock:
            self._expire()
            return {g: sum(1 for who in holders if who != exclude)
                    for g, holders in self._held.items()}

    def hold(self, annotator: str, generation_ids: Iterable[str]) -> None:
        now = time.monotonic()
        with self.lock:
            for g in generation_ids:
                self._held.setdefault(g, {})[annotator] = now

    def release(self, annotator: str, generation_id: str) -> None:
        with self.lock:
            holders = self._held.get(generation_id, {})
            holders.pop(annotator, None)
            if not holders:
                self._held.pop(generation_id, None)

    def release_all(self, annotator: str) -> None:
        """Free everything `annotator` holds (they start a new session)."""
        with self.lock:
            for g in list(self._held):
                self.release(annotator, g)

    def _expire(self) -> None:
        cutoff = time.monotonic() - self.ttl_s
        for g in list(self._held):
            self._held[g] = {who: t for who, t in self._held[g].items() if t > cutoff}
            if not self._held[g]:
                del self._held[g]
