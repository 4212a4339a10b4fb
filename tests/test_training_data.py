"""Training data as serving sees it: Hounsfield units rebuilt from two windows, patients written as DICOM
series and read back by the service, and folds that never split a patient."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread

from inference.dicom import read_series
from inference.limits import Limits
from training.ct_ich import BONE_WINDOW, BRAIN_WINDOW, by_patient, read_hu, read_slices, rebuild_hu
from training.data import TrainingSet
from training.series_writer import write_series


def _export(hu: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """An 8-bit export of Hounsfield units through a viewer's window."""
    level, width = window
    return np.clip(np.rint((hu - (level - width / 2)) / width * 255), 0, 255).astype(np.uint8)


def test_hounsfield_units_are_rebuilt_from_the_brain_and_bone_exports() -> None:
    hu = np.linspace(-1000, 2000, 200 * 200).reshape(200, 200).astype(np.float32)
    rebuilt = rebuild_hu(_export(hu, BRAIN_WINDOW), _export(hu, BONE_WINDOW)).astype(np.float32)
    inside = (hu > -19) & (hu < 99)  # the brain window is exact to half a grey level there
    assert np.abs(rebuilt - hu)[inside].max() <= BRAIN_WINDOW[1] / 255 / 2 + 0.5
    outside = ~inside & (hu > BONE_WINDOW[0] - BONE_WINDOW[1] / 2)
    assert np.abs(rebuilt - hu)[outside].max() <= BONE_WINDOW[1] / 255 / 2 + 0.5
    assert rebuilt.dtype == np.float32 and rebuild_hu(np.zeros((2, 2), np.uint8), None).dtype == np.int16


def test_without_a_bone_export_saturated_pixels_become_air_and_bone() -> None:
    brain = np.array([[0, 128, 255]], dtype=np.uint8)
    assert rebuild_hu(brain, None).tolist() == [[-1000, 40, 1000]]


def test_a_real_slice_rebuilds_to_plausible_head_ct_units(ct_ich_dir: Path) -> None:
    item = next(entry for entry in read_slices(ct_ich_dir) if entry.number == 15)
    hu = read_hu(ct_ich_dir, item)
    assert hu.shape == (650, 650)
    assert hu.min() <= -800  # air around the head
    assert hu.max() >= 1000  # skull
    assert ((hu > 20) & (hu < 45)).mean() > 0.1  # brain


def test_a_written_series_reads_back_as_the_same_units_in_slice_order(ct_ich_dir: Path, tmp_path: Path) -> None:
    patient = next(iter(by_patient(read_slices(ct_ich_dir)).values()))[:6]
    units = [read_hu(ct_ich_dir, item) for item in patient]
    paths = write_series(units, tmp_path, spacing_mm=0.4, thickness_mm=5.0)
    files = [path.read_bytes() for path in reversed(paths)]  # arrival order must not matter
    (series,) = read_series(files, Limits(), strict=True)
    assert len(series.slices) == len(units)
    for read, written in zip(series.slices, units, strict=True):
        assert np.array_equal(read.hu, written)
        assert read.spacing_mm == pytest.approx(0.4)
    ds = dcmread(paths[0])
    assert ds.Modality == "CT" and ds.PatientName == "ANONYMOUS" and "PatientBirthDate" not in ds


def test_folds_never_put_one_patients_slices_on_both_sides() -> None:
    pytest.importorskip("torch", reason="needs torch (the train extra)")
    pytest.importorskip("sklearn", reason="needs scikit-learn (the train extra)")
    from training.crossval import patient_folds

    groups = np.array([f"ct-ich/{patient:03d}" for patient in range(20) for _ in range(30)]
                      + [f"head-ct/{index:03d}" for index in range(40)])
    rng = np.random.default_rng(0)
    bled = {group: int(group[-3:]) % 5 < 2 for group in set(groups)}  # 8 of 20 patients, 16 of 40 slices
    labels = np.array([[float(bled[group] and rng.random() < 0.5)] for group in groups], dtype=np.float32)
    labels[[np.flatnonzero(groups == group)[0] for group in bled if bled[group]]] = 1.0
    rows = len(groups)
    data = TrainingSet(
        pictures=np.zeros((rows, 1, 1)), picture_assessable=np.ones(rows, bool), hu=np.zeros((rows, 1, 1)),
        has_hu=np.array([group.startswith("ct-ich") for group in groups]), labels=labels, groups=groups,
        numbers=np.arange(rows),
    )
    folds = patient_folds(data, folds=5, seed=1)
    for group in set(groups):
        assert len(set(folds[groups == group].tolist())) == 1, group
    assert sorted(set(folds.tolist())) == [0, 1, 2, 3, 4]
    scanner_patients_per_fold = [len(set(groups[(folds == k) & data.has_hu])) for k in range(5)]
    assert min(scanner_patients_per_fold) >= 3  # stratification spreads the scanner patients
