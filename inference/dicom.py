"""DICOM files read in memory: grouped into series, ordered along the body axis, converted to Hounsfield units.

Only pixel values and geometry leave this module. Names, IDs, dates, accession numbers and institutions are
never read out of the datasets, so nothing identifying can reach a result, a log line or an error message.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from pydicom import Dataset, dcmread
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixels import apply_modality_lut, get_decoder
from pydicom.tag import Tag
from pydicom.uid import UID

from inference.errors import InputError
from inference.limits import Limits
from inference.scan import Series, Slice

_AXIAL_MIN_COSINE = 0.8  # slice normal within about 37° of the body axis (gantry tilt included) counts as axial
_HU_RANGE = (-32768, 32767)


def is_dicom(data: bytes) -> bool:
    """True when the bytes carry the DICOM part-10 preamble."""
    return data[128:132] == b"DICM"


def read_series(files: Iterable[bytes], limits: Limits, *, strict: bool) -> list[Series]:
    """Every image series among the files, ordered from the lowest slice to the highest.

    With `strict`, a file that is not DICOM is an error (a single upload); otherwise it is skipped (a ZIP or
    folder may hold a README or a DICOMDIR beside the images).
    """
    datasets = [ds for ds in (_parse(data, strict=strict) for data in files) if ds is not None]
    if not datasets:
        raise InputError("No DICOM images were found. HemoWatch reads DICOM files, a ZIP or folder of them, or PNG/JPEG pictures.")
    frames = sum(_frame_count(ds) for ds in datasets)
    if frames > limits.max_slices:
        raise InputError(f"The scan has {frames} slices; at most {limits.max_slices} can be analysed at once.")
    groups: dict[str, list[Dataset]] = {}
    for ds in datasets:
        groups.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append(ds)
    ordered = sorted(groups.values(), key=lambda group: _series_number(group[0]) or 0)
    return [_series(group, ordinal) for ordinal, group in enumerate(ordered, start=1)]


def _parse(data: bytes, *, strict: bool) -> Dataset | None:
    try:
        ds = dcmread(io.BytesIO(data))
    except InvalidDicomError as error:
        if strict:
            raise InputError("The file is not a DICOM file.") from error
        return None
    except Exception as error:  # pydicom raises many types for damaged headers; none may reach the user
        if strict:
            raise InputError("The DICOM file is damaged or incomplete.") from error
        return None
    if "PixelData" not in ds:
        if strict:
            raise InputError("The DICOM file holds no image.")
        return None
    _check_header(ds)
    return ds


# The header elements the reader uses; those marked True must hold numbers, as geometry and units depend on them.
_USED_ELEMENTS = {
    "Modality": False, "SeriesInstanceUID": False, "SeriesNumber": False, "InstanceNumber": False,
    "NumberOfFrames": False, "PhotometricInterpretation": False, "ImagePositionPatient": True,
    "ImageOrientationPatient": True, "PixelSpacing": True, "RescaleSlope": True, "RescaleIntercept": True,
}


def _check_header(ds: Dataset) -> None:
    """Read every element the reader uses once, so a corrupt one (a letter inside a number, an unknown value
    representation) is named in a plain message rather than failing somewhere later. Values are never shown."""
    for keyword, numeric in _USED_ELEMENTS.items():
        try:
            value = ds.get(keyword)
            if numeric and value not in (None, ""):
                np.asarray(value if isinstance(value, MultiValue | list) else [value], dtype=float)
        except Exception as error:  # pydicom raises assorted types for a value it cannot convert
            raise InputError(
                f"The DICOM element {keyword} {Tag(keyword)} is damaged and cannot be read. "
                "Export the series again from the scanner or PACS."
            ) from error


@dataclass(frozen=True)
class _Frame:
    """One slice of a series before decoding: which dataset and frame, and where it lies."""

    dataset: Dataset
    index: int | None  # frame number inside a multi-frame file
    position: float | None  # millimetres along the slice normal
    instance: int | None


def _series(datasets: Sequence[Dataset], ordinal: int) -> Series:
    first = datasets[0]
    modality = str(first.get("Modality", "")).upper() or "unknown modality"
    frames = _order([frame for ds in datasets for frame in _frames(ds)])
    slices = [_slice(frame) for frame in frames]
    number = _series_number(first) or ordinal
    warnings = []
    if modality != "CT":
        warnings.append(f"Modality is {modality}, not CT")
    normal = _normal(first, 0 if _frame_count(first) > 1 else None)
    if normal is not None and abs(normal[2]) < _AXIAL_MIN_COSINE:
        warnings.append("The series is not axial; the model was trained on axial slices")
    return Series(
        label=f"series {number} ({modality}, {len(slices)} slice{'s' if len(slices) != 1 else ''})",
        slices=slices,
        is_ct=modality == "CT",
        warnings=warnings,
    )


def _frames(ds: Dataset) -> list[_Frame]:
    count = _frame_count(ds)
    indices: list[int | None] = list(range(count)) if count > 1 or "NumberOfFrames" in ds else [None]
    instance = _int(ds.get("InstanceNumber"))
    return [_Frame(ds, index, _position(ds, index), instance) for index in indices]


def _order(frames: list[_Frame]) -> list[_Frame]:
    """Along the slice normal when every slice has a position, else by instance number, else as read."""
    if all(frame.position is not None for frame in frames):
        return sorted(frames, key=lambda frame: frame.position)  # type: ignore[arg-type, return-value]
    if all(frame.instance is not None for frame in frames):
        return sorted(frames, key=lambda frame: (frame.instance, frame.index or 0))  # type: ignore[arg-type, return-value]
    return frames


def _slice(frame: _Frame) -> Slice:
    ds = frame.dataset
    _check_transfer_syntax(ds)
    if str(ds.get("PhotometricInterpretation", "MONOCHROME2")).startswith(("RGB", "YBR", "PALETTE")):
        raise InputError("The DICOM holds a colour image (for example a screenshot), not CT slices.")
    try:
        pixels = ds.pixel_array  # decoded once and cached on the dataset, shared by its frames
        frame_pixels = pixels if pixels.ndim == 2 else pixels[frame.index or 0]
        hu = apply_modality_lut(frame_pixels, _lookup(ds, frame.index, "PixelValueTransformationSequence"))
    except InputError:
        raise
    except Exception as error:  # truncated pixel data and inconsistent headers surface as assorted errors
        raise InputError("A DICOM file is damaged or incomplete: its image could not be decoded.") from error
    if hu.ndim != 2:
        raise InputError("A DICOM image has an unexpected shape and could not be read.")
    hu = np.clip(np.asarray(hu, dtype=np.float32), *_HU_RANGE)
    return Slice(hu=np.rint(hu, out=hu).astype(np.int16), spacing_mm=_spacing(ds, frame.index))


def _check_transfer_syntax(ds: Dataset) -> None:
    syntax = UID(str(ds.file_meta.get("TransferSyntaxUID", "1.2.840.10008.1.2")))
    try:
        available = get_decoder(syntax).is_available
    except NotImplementedError:
        available = False
    if not available:
        raise InputError(
            f"The DICOM uses the transfer syntax {syntax.name} ({syntax}), which HemoWatch cannot decode. "
            "Export the series uncompressed or as JPEG 2000."
        )


def _lookup(ds: Dataset, index: int | None, sequence: str) -> Dataset:
    """The dataset holding a functional-group macro for a frame: per-frame, then shared, then the top level."""
    if index is not None:
        for groups, item in (("PerFrameFunctionalGroupsSequence", index), ("SharedFunctionalGroupsSequence", 0)):
            items = ds.get(groups)
            if items and len(items) > item and items[item].get(sequence):
                return items[item].get(sequence)[0]
    return ds


def _normal(ds: Dataset, index: int | None) -> np.ndarray | None:
    orientation = _lookup(ds, index, "PlaneOrientationSequence").get("ImageOrientationPatient")
    if orientation is None or len(orientation) != 6:
        return None
    row, column = np.asarray(orientation[:3], dtype=float), np.asarray(orientation[3:], dtype=float)
    normal = np.cross(row, column)
    length = np.linalg.norm(normal)
    return normal / length if length > 0 else None


def _position(ds: Dataset, index: int | None) -> float | None:
    origin = _lookup(ds, index, "PlanePositionSequence").get("ImagePositionPatient")
    normal = _normal(ds, index)
    if origin is None or len(origin) != 3 or normal is None:
        return None
    return float(np.dot(normal, np.asarray(origin, dtype=float)))


def _spacing(ds: Dataset, index: int | None) -> float | None:
    spacing = _lookup(ds, index, "PixelMeasuresSequence").get("PixelSpacing")
    return float(spacing[0]) if spacing and float(spacing[0]) > 0 else None


def _frame_count(ds: Dataset) -> int:
    return max(1, _int(ds.get("NumberOfFrames")) or 1)


def _series_number(ds: Dataset) -> int | None:
    return _int(ds.get("SeriesNumber"))


def _int(value: object) -> int | None:
    try:
        return int(value) if value not in (None, "") else None  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None
