"""Growing pauses between retries: doubling from a first pause up to a longest, for every part that tries again
(reconnecting to the broker, storing through an outage, calling Telegram, sending results to PACS)."""

from __future__ import annotations

import random

_MAX_DOUBLINGS = 64  # far past any longest pause; keeps 2**n a number a float can hold however long it fails


def doubling_s(first_s: float, max_s: float, failures: int) -> float:
    """The pause after `failures` failures in a row before this one: `first_s`, twice that, ... at most `max_s`."""
    return min(max_s, first_s * 2 ** min(failures, _MAX_DOUBLINGS))


class Backoff:
    """The pauses of one run of failures; `reset()` once an attempt succeeds. With `jitter`, each pause is drawn
    from the upper half of its span, so a fleet of clients does not return all at once."""

    def __init__(self, first_s: float = 0.5, max_s: float = 30.0, *, jitter: bool = True) -> None:
        self._first_s = first_s
        self._max_s = max_s
        self._jitter = jitter
        self.failures = 0

    def next_delay(self) -> float:
        ceiling = doubling_s(self._first_s, self._max_s, self.failures)
        self.failures += 1
        return ceiling / 2 + random.uniform(0, ceiling / 2) if self._jitter else ceiling

    def reset(self) -> None:
        self.failures = 0
