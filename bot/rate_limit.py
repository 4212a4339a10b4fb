"""A per-user sliding-window rate limit, driven by the caller's clock."""

from __future__ import annotations

from collections import defaultdict, deque


class RateLimit:
    """At most `limit` admitted events per user in any `window_s` seconds."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self._admitted: defaultdict[int, deque[float]] = defaultdict(deque)

    def admit(self, user_id: int, now: float) -> float:
        """Count one event and return 0, or return how many seconds the user must wait (nothing counted)."""
        recent = self._admitted[user_id]
        while recent and recent[0] <= now - self.window_s:
            recent.popleft()
        if len(recent) >= self.limit:
            return recent[0] + self.window_s - now
        recent.append(now)
        return 0.0
