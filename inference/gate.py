"""The slice gate: is there enough brain in view for the model's answer to mean anything?

DICOM slices are judged in Hounsfield units: brain-density tissue (0-80 HU) enclosed by the skull (>300 HU),
as a share of the head's cross-section. Skull-base slices (mostly bone, face and neck) and vertex slices
(a cap of bone) fall below that share. Pictures carry no units, so they are judged by what any exported
CT slice looks like: shades of grey, a dark background and a bright head in the middle. A head that fills less
than a fifth of the picture is mostly a slice near the skull base or the top of the skull (where the head's
cross-section is small) and is judged as a DICOM slice is, by the brain it shows inside the skull, the skull
being the saturated white of a brain window.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from inference.masks import eroded, filled
from inference.scan import Slice

AIR_HU = -300.0  # below this is air around the head
BONE_HU = 300.0
BRAIN_HU = (0.0, 80.0)
MIN_BRAIN_SHARE = 0.25  # brain inside the skull, as a share of the head's cross-section
_BLOCK_MM = 2.0  # the gate looks at 2 mm blocks: fast, and thin skull still closes the ring
_SCALP_MM = 6.0  # tissue reaching this close to the skin is scalp or face, not brain
_DEFAULT_SPACING_MM = 0.5
_MIN_HEAD_BLOCKS = 100

_PICTURE_SIDE = 128
_MAX_COLOUR_SHARE = 0.02
_MIN_CONTRAST = 0.05  # standard deviation of grey levels below this is a blank picture
_MAX_BACKGROUND = 0.45  # grey level of the picture's border: CT backgrounds are black or dark grey
_HEAD_LEVEL = 0.15
_MIN_HEAD_SHARE = 0.2  # a head filling this share of the picture is a usual export of a slice: assessed as it is
_MIN_SMALL_HEAD_SHARE = 0.05  # a smaller bright object is no head
_PICTURE_BONE = 0.9  # grey level of bone on the small copy: saturated in a brain window, a little blurred
_PICTURE_SCALP = 3  # pixels of the small copy (about 6 mm of a usual view): tissue this near the skin is scalp

LITTLE_BRAIN = "Mostly bone or little brain in view (skull base, top of the skull, or no head)."


@dataclass(frozen=True)
class Assessment:
    """Whether a slice can be assessed, and if not, why, in words for the person who sent it."""

    assessable: bool
    reason: str | None = None


ASSESSABLE = Assessment(True)


def assess_slice(scan_slice: Slice, is_ct: bool = True) -> Assessment:
    if not is_ct:
        return Assessment(False, "Not a CT image.")
    if scan_slice.hu is not None:
        return assess_hu(scan_slice.hu, scan_slice.spacing_mm)
    assert scan_slice.picture is not None
    return assess_picture(scan_slice.picture, scan_slice.colour_share)


def brain_share(hu: np.ndarray, spacing_mm: float | None = None) -> float:
    """Share of the head's cross-section that is brain-density tissue enclosed by the skull."""
    step = max(1, round(_BLOCK_MM / (spacing_mm or _DEFAULT_SPACING_MM)))
    add = _add_int32 if hu.dtype.kind in "iu" and hu.dtype.itemsize <= 2 else np.add
    mean = _blocks(hu, step, add) / step**2
    bone = _blocks(hu, step, np.maximum) > BONE_HU  # any bone in a block keeps the skull ring closed
    head = _largest(filled(mean > AIR_HU))
    if int(head.sum()) < _MIN_HEAD_BLOCKS:
        return 0.0
    scalp_depth = max(1, round(_SCALP_MM / (step * (spacing_mm or _DEFAULT_SPACING_MM))))
    tissue = head & ~bone & (mean >= BRAIN_HU[0]) & (mean <= BRAIN_HU[1])
    return _enclosed_share(head, tissue, scalp_depth)


def _enclosed_share(head: np.ndarray, tissue: np.ndarray, scalp_depth: int) -> float:
    """Share of `head` that is `tissue` in parts reaching no closer than `scalp_depth` to the skin: brain, which
    the skull separates from the scalp."""
    near_skin = head & ~eroded(head, scalp_depth)
    labels, _ = ndimage.label(tissue)
    outside_skull = np.unique(labels[near_skin & tissue])
    brain = tissue & ~np.isin(labels, outside_skull)
    return float(brain.sum()) / int(head.sum())


def assess_hu(hu: np.ndarray, spacing_mm: float | None = None) -> Assessment:
    if brain_share(hu, spacing_mm) < MIN_BRAIN_SHARE:
        return Assessment(False, LITTLE_BRAIN)
    return ASSESSABLE


def assess_picture(grey: np.ndarray, colour_share: float = 0.0) -> Assessment:
    if colour_share > _MAX_COLOUR_SHARE:
        return Assessment(False, "The picture is in colour; a CT slice is in shades of grey.")
    small = _shrunk(grey)
    if small.std() < _MIN_CONTRAST:
        return Assessment(False, "The picture is blank.")
    border = np.concatenate([small[0], small[-1], small[:, 0], small[:, -1]])
    if np.median(border) > _MAX_BACKGROUND:
        return Assessment(False, "The picture has a light background; a CT slice shows the head on black.")
    head = filled(_largest(small > _HEAD_LEVEL))
    if head.mean() >= _MIN_HEAD_SHARE:
        return ASSESSABLE
    if head.mean() < _MIN_SMALL_HEAD_SHARE:
        return Assessment(False, "No head can be seen in the picture.")
    if _enclosed_share(head, head & (small < _PICTURE_BONE), _PICTURE_SCALP) < MIN_BRAIN_SHARE:
        return Assessment(False, LITTLE_BRAIN)
    return ASSESSABLE


def _blocks(values: np.ndarray, step: int, combine: np.ufunc | Callable[..., np.ndarray]) -> np.ndarray:
    """`combine` over step × step blocks, as strided slices added up one row and one column of the block at a
    time (much faster than reducing a reshaped axis)."""
    height, width = (values.shape[0] // step) * step, (values.shape[1] // step) * step
    rows = functools.reduce(combine, (values[offset:height:step, :width] for offset in range(step)))
    return functools.reduce(combine, (rows[:, offset::step] for offset in range(step)))


def _add_int32(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Sums of int16 Hounsfield units (the DICOM reader's), in int32: a block of up to 65,536 cannot overflow."""
    return np.add(first, second, dtype=np.int32)


def _shrunk(grey: np.ndarray) -> np.ndarray:
    image = Image.fromarray(np.asarray(grey, dtype=np.float32))
    image.thumbnail((_PICTURE_SIDE, _PICTURE_SIDE), Image.Resampling.BILINEAR)
    return np.asarray(image)


def _largest(mask: np.ndarray) -> np.ndarray:
    labels, count = ndimage.label(mask)
    if count == 0:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == sizes.argmax()
