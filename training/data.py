"""The training set: every labelled slice as the service would feed it to the model, through both ways in.

A picture (brain-window export, phone photo) reaches the model through `inference.images.read_picture`; a
DICOM series through Hounsfield units and the service's window. Each CT-ICH slice is kept both ways: the
brain-window JPEG exactly as the picture path prepares it, and its rebuilt Hounsfield units cropped to the
same square that the DICOM path would prepare, so training can window them afresh in every epoch.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from inference.gate import assess_slice
from inference.images import read_picture
from inference.limits import Limits
from inference.preprocess import INPUT_SIZE, prepare_slice, window_hu
from inference.scan import Window
from training.ct_ich import AIR_HU, HAEMORRHAGE_TYPES, brain_picture_path, read_hu, read_slices

UNKNOWN = -1.0  # a label the source does not give (haemorrhage type of a `head-ct` slice)
SERVING_WINDOW = Window(35.0, 80.0)
"""The window the service shows the model DICOM slices through (written to the model card). Chosen on the kept
weights' cross-validation: centres 30-35 HU scored a little higher than 40 for every seed (docs/model.md)."""
CROP_WINDOW = Window(40.0, 80.0)
"""The window whose grey levels locate the head square of a training slice's units: the service's window when
the weights were trained, kept so that retraining gives the same weights (the squares differ from the serving
window's by 6 px or less in 9 slices of 10, well inside the shifts and zooms of augmentation)."""


@dataclass(frozen=True)
class TrainingSet:
    """Aligned arrays, one row per slice.

    `pictures` (N, S, S) is the picture path's input in [-1, 1], `picture_assessable` what the picture gate
    says of it; `hu` (N, S, S) the Hounsfield units of the DICOM path's square (rows without units hold air,
    see `has_hu`); `labels` (N, 1 + types) is haemorrhage, then each type (UNKNOWN where not given); `groups`
    names the patient, `numbers` the slice within its scan.
    """

    pictures: np.ndarray
    picture_assessable: np.ndarray
    hu: np.ndarray
    has_hu: np.ndarray
    labels: np.ndarray
    groups: np.ndarray
    numbers: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, rows: np.ndarray) -> TrainingSet:
        return TrainingSet(*(getattr(self, name)[rows] for name in self.__dataclass_fields__))


def picture_input(data: bytes) -> tuple[np.ndarray, bool]:
    """A picture file's model input (S, S) in [-1, 1], read and prepared exactly as serving does, and whether
    the picture gate lets it through."""
    picture = read_picture(data, Limits()).slices[0]
    return prepare_slice(picture.grey(SERVING_WINDOW)).tensor[0], assess_slice(picture).assessable


def hu_square(hu: np.ndarray) -> np.ndarray:
    """Hounsfield units (S, S) of the square the DICOM path prepares from this slice (as found through
    `CROP_WINDOW`), air where it pads."""
    top, left, side = prepare_slice(window_hu(hu, CROP_WINDOW.center, CROP_WINDOW.width)).box
    shifted = Image.fromarray(hu.astype(np.float32) - AIR_HU)  # the crop pads with 0, which must mean air
    square = shifted.crop((left, top, left + side, top + side)).resize(
        (INPUT_SIZE, INPUT_SIZE), Image.Resampling.BILINEAR
    )
    return np.asarray(square, dtype=np.float32) + AIR_HU


def read_head_ct_labels(folder: Path) -> dict[str, int]:
    """`head-ct/labels.csv` as `{id: 0 or 1}`, in file order."""
    with (folder / "labels.csv").open(newline="") as handle:
        return {row["id"]: int(row["hemorrhage"]) for row in csv.DictReader(handle)}


def load_training_set(ct_ich: Path | None, head_ct: Path | None) -> TrainingSet:
    """Every slice of the given collections, prepared once for all epochs."""
    pictures, assessable, squares, has_hu, labels, groups, numbers = [], [], [], [], [], [], []
    air = np.full((INPUT_SIZE, INPUT_SIZE), AIR_HU, dtype=np.float32)
    if ct_ich is not None:
        for item in read_slices(ct_ich):
            picture, passed = picture_input(brain_picture_path(ct_ich, item).read_bytes())
            pictures.append(picture)
            assessable.append(passed)
            squares.append(hu_square(read_hu(ct_ich, item)))
            has_hu.append(True)
            labels.append([item.haemorrhage, *item.types])
            groups.append(f"ct-ich/{item.patient}")
            numbers.append(item.number)
    if head_ct is not None:
        for slice_id, label in read_head_ct_labels(head_ct).items():
            picture, passed = picture_input((head_ct / "images" / f"{slice_id}.png").read_bytes())
            pictures.append(picture)
            assessable.append(passed)
            squares.append(air)
            has_hu.append(False)
            labels.append([label, *([UNKNOWN] * len(HAEMORRHAGE_TYPES))])
            groups.append(f"head-ct/{slice_id}")
            numbers.append(1)
    return TrainingSet(
        pictures=np.stack(pictures).astype(np.float32),
        picture_assessable=np.array(assessable, dtype=bool),
        hu=np.stack(squares).astype(np.float32),
        has_hu=np.array(has_hu, dtype=bool),
        labels=np.array(labels, dtype=np.float32),
        groups=np.array(groups),
        numbers=np.array(numbers, dtype=np.int64),
    )
