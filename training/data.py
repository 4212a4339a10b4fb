"""The labelled head CT slices, read through the same preprocessing that serving uses."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from inference.preprocess import grey_from_image, prepare_batch


@dataclass(frozen=True)
class LabelledSlices:
    """Model-ready tensors of labelled slices: `tensors` (N, 3, S, S) float32, `labels` (N,) 1 = haemorrhage."""

    ids: tuple[str, ...]
    tensors: np.ndarray
    labels: np.ndarray


def read_labels(folder: Path) -> dict[str, int]:
    """`labels.csv` as `{id: 0 or 1}`, in file order."""
    with (folder / "labels.csv").open(newline="") as handle:
        return {row["id"]: int(row["hemorrhage"]) for row in csv.DictReader(handle)}


def load_slices(folder: Path) -> LabelledSlices:
    """Every slice listed in `labels.csv`, from `images/<id>.png`, preprocessed once for all epochs."""
    labels = read_labels(folder)
    greys = []
    for slice_id in labels:
        with Image.open(folder / "images" / f"{slice_id}.png") as image:
            greys.append(grey_from_image(image))
    tensors, _ = prepare_batch(greys)
    return LabelledSlices(
        ids=tuple(labels), tensors=tensors, labels=np.array(list(labels.values()), dtype=np.int64)
    )
