"""The one preprocessing path from a picture or Hounsfield units to the model's input tensor.

Training and serving both call these functions, so what the model saw while learning is exactly what it sees
in use. Pure numpy and Pillow: no learning framework is needed to serve.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

INPUT_SIZE = 160
"""Side of the square model input, in pixels (160 keeps one slice well under 10 ms on two CPU threads)."""

_HEAD_MARGIN = 0.04  # fraction of the head's size kept as background around it
_MASK_SIDE = 256  # the head is located on a copy this large: fast and blind to single-pixel noise
_MIN_HEAD_FRACTION = 0.05  # a row or column belongs to the head when this much of the head's width crosses it


@dataclass(frozen=True)
class PreparedSlice:
    """A slice as the model takes it, and where in the source image the model looked.

    `box` is `(top, left, side)` in source pixels: the square the tensor shows. It may reach outside the
    image where the square was padded with black.
    """

    tensor: np.ndarray  # float32, (3, INPUT_SIZE, INPUT_SIZE)
    box: tuple[int, int, int]


def grey_from_image(image: Image.Image) -> np.ndarray:
    """Grey levels in [0, 1] of a picture of a windowed slice, upright as its EXIF orientation says.

    Transparent parts count as black (the background of a CT). Pictures with more than 8 bits per pixel carry
    no agreed white level, so they are stretched from their darkest to their brightest pixel.
    """
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        if high <= low:
            return np.zeros(values.shape, dtype=np.float32)
        return ((values - low) / (high - low)).astype(np.float32)
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info:
        image = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", image.size, (0, 0, 0, 255)), image)
    if image.mode not in ("L", "RGB", "RGBA"):
        image = image.convert("RGB")
    return np.asarray(image.convert("L"), dtype=np.float32) / 255.0


def window_hu(hu: np.ndarray, center: float = 40, width: float = 80) -> np.ndarray:
    """Hounsfield units through a display window: `center - width/2` and below is 0, `center + width/2` up is 1."""
    values = np.array(hu, dtype=np.float32)  # a copy, worked on in place
    values -= center - width / 2
    values /= width
    return np.clip(values, 0.0, 1.0, out=values)


def head_box(grey: np.ndarray) -> tuple[int, int, int, int]:
    """`(top, left, bottom, right)` of the head in a grey slice, ignoring black borders, noise and small labels.

    The head is what is clearly brighter than the image's border. Rows and columns are kept when enough of
    the head crosses them, and only the heaviest run of them, so burned-in letters beside the head drop out.
    """
    height, width = grey.shape
    scale = min(1.0, _MASK_SIDE / max(height, width))
    small = Image.fromarray(grey.astype(np.float32))
    small = small.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.BILINEAR)
    values = np.asarray(small)
    border = np.concatenate([values[0], values[-1], values[:, 0], values[:, -1]])
    mask = _opened(values > np.percentile(border, 25) + 0.1)
    if not mask.any():
        return 0, 0, height, width
    rows = np.ones(mask.shape[0], dtype=bool)
    cols = np.ones(mask.shape[1], dtype=bool)
    for _ in range(2):
        rows = _heaviest_run(mask[:, cols].sum(axis=1))
        cols = _heaviest_run(mask[rows].sum(axis=0))
    row_index, col_index = np.flatnonzero(rows), np.flatnonzero(cols)
    return (
        int(row_index[0] / scale),
        int(col_index[0] / scale),
        min(height, int(np.ceil((row_index[-1] + 1) / scale))),
        min(width, int(np.ceil((col_index[-1] + 1) / scale))),
    )


def _opened(mask: np.ndarray) -> np.ndarray:
    """Morphological opening with a 3 × 3 square (specks of noise removed), as separable 1-D passes, the edge
    pixel standing in for its missing neighbour."""
    eroded = _with_neighbours(_with_neighbours(mask, np.logical_and), np.logical_and, columns=True)
    return _with_neighbours(_with_neighbours(eroded, np.logical_or), np.logical_or, columns=True)


def _with_neighbours(mask: np.ndarray, combine: np.ufunc, columns: bool = False) -> np.ndarray:
    """Each row (or column) combined with its two neighbours."""
    result = mask.copy()
    view, source = (result.T, mask.T) if columns else (result, mask)
    combine(view[1:], source[:-1], out=view[1:])
    combine(view[:-1], source[1:], out=view[:-1])
    return result


def _heaviest_run(profile: np.ndarray) -> np.ndarray:
    """Boolean mask of the contiguous run of occupied positions holding the most foreground (the first of equals)."""
    occupied = profile >= max(1.0, _MIN_HEAD_FRACTION * profile.max())
    edges = np.diff(occupied.astype(np.int8), prepend=0, append=0)
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    if not len(starts):
        return np.ones_like(occupied)
    weight = np.concatenate([[0], np.cumsum(profile)])
    best = int(np.argmax(weight[stops] - weight[starts]))
    run = np.zeros_like(occupied)
    run[starts[best] : stops[best]] = True
    return run


def prepare_slice(grey: np.ndarray) -> PreparedSlice:
    """The model's input for one windowed grey slice in [0, 1]: the head, squared, resized and normalised."""
    top, left, bottom, right = head_box(grey)
    side = max(bottom - top, right - left)
    side = max(1, round(side * (1 + 2 * _HEAD_MARGIN)))
    top = (top + bottom - side) // 2
    left = (left + right - side) // 2
    square = Image.fromarray(np.asarray(grey, dtype=np.float32)).crop((left, top, left + side, top + side))
    pixels = np.asarray(square.resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BILINEAR), dtype=np.float32)
    # The backbone was pretrained on pictures scaled to [-1, 1].
    normalised = np.clip(pixels, 0.0, 1.0) * 2.0 - 1.0
    return PreparedSlice(tensor=np.repeat(normalised[None], 3, axis=0), box=(top, left, side))


def prepare_batch(slices: Sequence[np.ndarray]) -> tuple[np.ndarray, list[PreparedSlice]]:
    """Prepare several grey slices and stack their tensors into one `(N, 3, S, S)` batch."""
    prepared = [prepare_slice(grey) for grey in slices]
    return batch_of(prepared), prepared


def batch_of(prepared: Sequence[PreparedSlice]) -> np.ndarray:
    """The prepared slices' tensors as one `(N, 3, S, S)` float32 batch."""
    batch = np.zeros((len(prepared), 3, INPUT_SIZE, INPUT_SIZE), dtype=np.float32)
    for index, item in enumerate(prepared):
        batch[index] = item.tensor
    return batch
