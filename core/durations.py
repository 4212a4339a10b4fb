"""How long each of one kind of task took, counted where the tasks run, for the service's metrics to read.

A histogram as Prometheus reads one (how many took at most each bound, their count and their sum), kept without
a metrics library, so the parts that time their work need none; `hemowatch.metrics` turns it into the metric.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

SCAN_BOUNDS_S = (1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)  # a slice takes about a second, a series more


@dataclass
class Durations:
    bounds: tuple[float, ...] = SCAN_BOUNDS_S
    count: int = 0
    total_s: float = 0.0
    _within: list[int] = field(init=False)  # per bound: how many took at most it and more than the bound before

    def __post_init__(self) -> None:
        self._within = [0] * len(self.bounds)

    def add(self, seconds: float) -> None:
        self.count += 1
        self.total_s += seconds
        for index, bound in enumerate(self.bounds):
            if seconds <= bound:
                self._within[index] += 1
                break

    @contextmanager
    def timing(self) -> Iterator[None]:
        """Add how long the block took, also when it raised."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(time.perf_counter() - started)

    def cumulative(self) -> list[tuple[float, int]]:
        """(bound, how many took at most it) for each bound, then (inf, count): Prometheus's buckets."""
        running, buckets = 0, []
        for bound, count in zip(self.bounds, self._within, strict=True):
            running += count
            buckets.append((bound, running))
        return [*buckets, (float("inf"), self.count)]
