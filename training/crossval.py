"""Patient-wise cross-validation: each fold's model is exported as the service would run it (float32 and
8-bit), then scores its held-out patients through both ways in: every slice as the exported picture, and every
scanner patient as a DICOM series written to disk and read back by the service's DICOM reader."""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import StratifiedKFold

from inference.dicom import read_series
from inference.gate import assess_slice
from inference.limits import Limits
from inference.model import open_session
from inference.preprocess import prepare_batch, window_hu
from training.ct_ich import PIXEL_SPACING_MM, SLICE_THICKNESS_MM, CtIchSlice, read_hu
from training.data import SERVING_WINDOW, TrainingSet
from training.export import IDENTITY, INPUT_NAME, export_onnx, quantize
from training.fit import Recipe, train
from training.network import HaemorrhageNet, trained_network
from training.series_writer import write_series

log = logging.getLogger(__name__)

CALIBRATION_SLICES = 128
VARIANTS = ("float32", "int8")


def patient_folds(data: TrainingSet, folds: int, seed: int) -> np.ndarray:
    """Fold of each row: patients (never slices) are dealt to folds, stratified by whether they bled."""
    groups, first = np.unique(data.groups, return_index=True)
    bled = np.array([data.labels[data.groups == group, 0].max() for group in groups])
    source = np.array([group.split("/")[0] for group in groups])
    strata = np.char.add(source, bled.astype(int).astype(str))
    fold_of_group = np.zeros(len(groups), dtype=np.int64)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fold, (_, held) in enumerate(splitter.split(groups, strata)):
        fold_of_group[held] = fold
    lookup = dict(zip(groups, fold_of_group, strict=True))
    return np.array([lookup[group] for group in data.groups])


def serving_inputs(data: TrainingSet, rows: np.ndarray) -> np.ndarray:
    """Model inputs (N, 3, S, S) of rows as served: scanner slices through the service's window, others as
    pictures."""
    grey = np.where(
        data.has_hu[rows, None, None],
        window_hu(data.hu[rows], SERVING_WINDOW.center, SERVING_WINDOW.width) * 2.0 - 1.0,
        data.pictures[rows],
    )
    return np.repeat(grey[:, None].astype(np.float32), 3, axis=1)


class Scorer:
    """An exported model as onnxruntime runs it: log-odds of haemorrhage and type probabilities."""

    def __init__(self, path: Path) -> None:
        self._session = open_session(path, threads=2)

    def score(self, images: np.ndarray, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
        logits, types = [], []
        for start in range(0, len(images), batch):
            probability, type_probability = self._session.run(
                ["probability", "types"], {INPUT_NAME: images[start : start + batch]}
            )
            p = np.clip(probability.astype(np.float64), 1e-7, 1 - 1e-7)
            logits.append(np.log(p / (1 - p)))
            types.append(type_probability)
        return np.concatenate(logits), np.concatenate(types)


@dataclass
class OutOfFold:
    """What each row got from the fold model that never saw its patient, per way in and model variant."""

    fold: np.ndarray
    picture: dict[str, np.ndarray]  # variant -> haemorrhage log-odds (N,)
    dicom: dict[str, np.ndarray]  # variant -> log-odds through the DICOM reader (NaN for rows without units)
    dicom_assessable: np.ndarray  # the DICOM gate's answer (False for rows without units)
    picture_types: np.ndarray  # (N, T) float32 model's type probabilities, picture path
    dicom_types: np.ndarray  # (N, T) the same through the DICOM path

    @classmethod
    def empty(cls, rows: int, types: int) -> OutOfFold:
        nan = np.full(rows, np.nan)
        return cls(
            fold=np.zeros(rows, dtype=np.int64),
            picture={variant: nan.copy() for variant in VARIANTS},
            dicom={variant: nan.copy() for variant in VARIANTS},
            dicom_assessable=np.zeros(rows, dtype=bool),
            picture_types=np.full((rows, types), np.nan),
            dicom_types=np.full((rows, types), np.nan),
        )


def _series_inputs(ct_ich: Path, slices: list[CtIchSlice], folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """Model inputs and gate answers of one patient sent as a DICOM series, read back as the service does."""
    paths = write_series(
        [read_hu(ct_ich, item) for item in slices], folder, spacing_mm=PIXEL_SPACING_MM,
        thickness_mm=SLICE_THICKNESS_MM,
    )
    (series,) = read_series([path.read_bytes() for path in paths], Limits(), strict=False)
    batch, _ = prepare_batch([item.grey(SERVING_WINDOW) for item in series.slices])
    return batch, np.array([assess_slice(item, series.is_ct).assessable for item in series.slices])


def score_fold(
    data: TrainingSet, held: np.ndarray, scorers: dict[str, Scorer], ct_ich: Path | None, oof: OutOfFold,
    scratch: Path,
) -> None:
    """Fill `oof` for the held-out rows."""
    pictures = np.repeat(data.pictures[held, None], 3, axis=1)
    for variant, scorer in scorers.items():
        oof.picture[variant][held], types = scorer.score(pictures)
        if variant == "float32":
            oof.picture_types[held] = types
    if ct_ich is None:
        return
    for group in np.unique(data.groups[held]):
        if not group.startswith("ct-ich/"):
            continue
        rows = np.flatnonzero(data.groups == group)
        rows = rows[np.argsort(data.numbers[rows])]
        patient = group.split("/")[1]
        slices = [CtIchSlice(patient, int(number), 0, ()) for number in data.numbers[rows]]
        batch, assessable = _series_inputs(ct_ich, slices, scratch / patient)
        oof.dicom_assessable[rows] = assessable
        for variant, scorer in scorers.items():
            oof.dicom[variant][rows], types = scorer.score(batch)
            if variant == "float32":
                oof.dicom_types[rows] = types


def fold_network(
    data: TrainingSet, fit: np.ndarray, recipe: Recipe, weights: Path, name: str, kept: Path | None, reuse: bool
) -> HaemorrhageNet:
    """The network trained on rows `fit`; with `kept`, saved there, or with `reuse` too, read from there (trained
    earlier with the same recipe and rows) instead of trained again."""
    if reuse and kept is not None:
        return trained_network(kept, outputs=data.labels.shape[1])
    net = train(data.subset(fit), recipe, weights, name=name)
    if kept is not None:
        torch.save(net.state_dict(), kept)
    return net


def cross_validate(
    data: TrainingSet, recipe: Recipe, folds: int, weights: Path, ct_ich: Path | None, keep: Path | None = None,
    reuse: bool = False,
) -> OutOfFold:
    """Train one model per fold and score its held-out patients with its exported float32 and 8-bit graphs;
    with `keep`, each fold's weights are saved there (`fold-1.pt`, ...), or with `reuse` too, taken from there
    (trained earlier with the same recipe and data) instead of trained again."""
    fold_of = patient_folds(data, folds, recipe.seed)
    oof = OutOfFold.empty(len(data), data.labels.shape[1] - 1)
    oof.fold = fold_of
    for fold in range(folds):
        started = time.monotonic()
        held, fit = np.flatnonzero(fold_of == fold), np.flatnonzero(fold_of != fold)
        kept = None if keep is None else keep / f"fold-{fold + 1}.pt"
        net = fold_network(data, fit, recipe, weights, f"fold {fold + 1}/{folds}", kept, reuse)
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(scratch)
            export_onnx(net, IDENTITY, folder / "float32.onnx")
            calibration = fit[np.random.default_rng(recipe.seed).permutation(len(fit))[:CALIBRATION_SLICES]]
            quantize(folder / "float32.onnx", folder / "int8.onnx", serving_inputs(data, calibration))
            scorers = {variant: Scorer(folder / f"{variant}.onnx") for variant in VARIANTS}
            score_fold(data, held, scorers, ct_ich, oof, folder)
        log.info("fold %d/%d: %d held-out slices scored, %.0f s", fold + 1, folds, len(held),
                 time.monotonic() - started)
    return oof
