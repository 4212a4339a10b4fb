"""Writes slices in Hounsfield units as a DICOM CT series, as a scanner would store them.

Cross-validation sends each held-out patient through the service's DICOM reader in this form, so the DICOM
path is judged on files, not on arrays. The datasets carry no identity: placeholders only.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

RESCALE_INTERCEPT = -1024  # stored values are unsigned, as most scanners write them


def _dataset(hu: np.ndarray, *, study: str, series: str, number: int, z_mm: float, spacing_mm: float,
             thickness_mm: float) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.Modality = "CT"
    ds.PatientName = "ANONYMOUS"
    ds.PatientID = "ANONYMOUS"
    ds.SeriesNumber = 1
    ds.InstanceNumber = number
    ds.ImagePositionPatient = [0.0, 0.0, float(z_mm)]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.PixelSpacing = [spacing_mm, spacing_mm]
    ds.SliceThickness = thickness_mm
    ds.Rows, ds.Columns = hu.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = RESCALE_INTERCEPT
    ds.RescaleSlope = 1
    ds.WindowCenter = 40
    ds.WindowWidth = 80
    stored = np.clip(hu.astype(np.int32) - RESCALE_INTERCEPT, 0, 4095).astype(np.uint16)
    ds.PixelData = stored.tobytes()
    return ds


def write_series(
    slices: Sequence[np.ndarray], folder: Path, *, spacing_mm: float, thickness_mm: float
) -> list[Path]:
    """One DICOM file per slice in `folder`, the first slice lowest; returns the paths in slice order."""
    folder.mkdir(parents=True, exist_ok=True)
    study, series = generate_uid(), generate_uid()
    paths = []
    for index, hu in enumerate(slices):
        ds = _dataset(hu, study=study, series=series, number=index + 1, z_mm=index * thickness_mm,
                      spacing_mm=spacing_mm, thickness_mm=thickness_mm)
        path = folder / f"{index + 1:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
