"""What the readers hand to the analysis: slices grouped into series, carrying only derived pixel values."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inference.preprocess import window_hu


@dataclass(frozen=True)
class Window:
    """The display window that maps Hounsfield units to the grey levels the model sees (its card names the one it
    was validated with)."""

    center: float
    width: float


@dataclass(frozen=True)
class Slice:
    """One axial image: Hounsfield units when it came from DICOM, otherwise the grey levels of a picture."""

    hu: np.ndarray | None = None  # int16, rounded Hounsfield units
    picture: np.ndarray | None = None  # float32 grey levels in [0, 1], already windowed by whoever exported it
    spacing_mm: float | None = None  # pixel side, when the scan says
    colour_share: float = 0.0  # share of clearly coloured pixels: a CT picture has none

    def grey(self, window: Window) -> np.ndarray:
        """Grey levels in [0, 1] as the model takes them."""
        if self.hu is not None:
            return window_hu(self.hu, window.center, window.width)
        assert self.picture is not None
        return self.picture


SliceWork = Callable[["Slice"], Any]
"""What the analysis does with each slice once it is decoded (gate it, prepare the model's input)."""
Decoding = Callable[[SliceWork], Iterator[tuple["Slice", Any]]]
"""The slices still to decode, in order, each with what `work` gave for it, `work` run by the decoding threads."""


def _no_work(_: Slice) -> None:
    return None


@dataclass(frozen=True)
class Series:
    """Slices of one acquisition, ordered from the lowest to the highest along the body axis."""

    label: str  # non-identifying, e.g. "series 2 (CT, 28 slices)"
    slices: list[Slice]  # the slices decoded so far: all of them once `stream()` has been consumed
    is_ct: bool = True
    warnings: list[str] = field(default_factory=list)
    pending: Decoding | None = field(default=None, repr=False, compare=False)  # runs once, by the first `stream()`
    n_slices: int | None = None  # how many slices the headers announce, while some are still pending

    @property
    def size(self) -> int:
        """How many slices the series has, decoded or not."""
        return len(self.slices) if self.n_slices is None else self.n_slices

    def stream(self, work: SliceWork = _no_work) -> Iterator[tuple[Slice, Any]]:
        """Every slice in order with `work(slice)`, the pending ones as soon as each is decoded and worked on (in
        the decoding threads, beside the caller); each joins `slices` on the way."""
        for item in list(self.slices):
            yield item, work(item)
        if self.pending is not None:
            for item, done in self.pending(work):
                self.slices.append(item)
                yield item, done
