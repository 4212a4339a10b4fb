"""The CT-ICH collection: real trauma head CT scans, labelled slice by slice, as two windowed JPEG exports.

Hssayeni M. (2020), "Computed Tomography Images for Intracranial Hemorrhage Detection and Segmentation",
PhysioNet 1.0.0, doi:10.13026/w8q8-ky94 (CC BY 4.0). Each slice was exported in a brain window (level 40,
width 120) and a bone window (level 700, width 3200); Hounsfield units are rebuilt from the pair.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

HAEMORRHAGE_TYPES = ("epidural", "subdural", "subarachnoid", "intraparenchymal", "intraventricular")
BRAIN_WINDOW = (40.0, 120.0)  # (level, width) of the `brain/` export
BONE_WINDOW = (700.0, 3200.0)  # (level, width) of the `bone/` export
PIXEL_SPACING_MM = 0.4  # the exports carry none; 650 pixels across a head CT's usual 25-26 cm field of view
SLICE_THICKNESS_MM = 5.0
AIR_HU = -1000


@dataclass(frozen=True)
class CtIchSlice:
    """One labelled slice: `number` counts from 1 at the skull base; `types` follows HAEMORRHAGE_TYPES."""

    patient: str
    number: int
    haemorrhage: int
    types: tuple[int, ...]

    @property
    def stem(self) -> str:
        return f"{self.patient}/{self.number:02d}.jpg"


def read_slices(folder: Path) -> list[CtIchSlice]:
    """Every slice of `labels.csv`, ordered by patient and from the lowest slice up."""
    with (folder / "labels.csv").open(newline="") as handle:
        rows = [
            CtIchSlice(
                patient=f"{int(row['patient']):03d}",
                number=int(row["slice"]),
                haemorrhage=int(row["hemorrhage"]),
                types=tuple(int(row[name]) for name in HAEMORRHAGE_TYPES),
            )
            for row in csv.DictReader(handle)
        ]
    return sorted(rows, key=lambda item: (item.patient, item.number))


def by_patient(slices: Sequence[CtIchSlice]) -> dict[str, list[CtIchSlice]]:
    """Slices grouped by patient, each group from the lowest slice up."""
    groups: dict[str, list[CtIchSlice]] = {}
    for item in slices:
        groups.setdefault(item.patient, []).append(item)
    return groups


def brain_picture_path(folder: Path, item: CtIchSlice) -> Path:
    return folder / "brain" / item.stem


def _hu_from_window(values: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    level, width = window
    return level - width / 2 + values.astype(np.float32) * (width / 255.0)


def rebuild_hu(brain: np.ndarray, bone: np.ndarray | None) -> np.ndarray:
    """Hounsfield units (int16) from the 8-bit brain- and bone-window exports of one slice.

    Inside the brain window (-20 to 100 HU) its values are exact to half a unit; where it is saturated (0 or
    255) the bone window tells the rest. Without a bone export, saturated pixels become air or bone.
    """
    hu = _hu_from_window(brain, BRAIN_WINDOW)
    saturated = (brain == 0) | (brain == 255)
    if bone is not None:
        hu[saturated] = _hu_from_window(bone, BONE_WINDOW)[saturated]
    else:
        hu[brain == 0] = AIR_HU
        hu[brain == 255] = 1000.0
    return np.rint(np.clip(hu, AIR_HU, 3071)).astype(np.int16)


def read_hu(folder: Path, item: CtIchSlice) -> np.ndarray:
    """The slice in Hounsfield units, rebuilt from its two exports (patient 84's bone slice 36 is missing)."""
    with Image.open(brain_picture_path(folder, item)) as image:
        brain = np.asarray(image.convert("L"))
    bone_path = folder / "bone" / item.stem
    bone = None
    if bone_path.exists():
        with Image.open(bone_path) as image:
            bone = np.asarray(image.convert("L"))
    return rebuild_hu(brain, bone)
