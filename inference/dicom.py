"""DICOM files read in memory: grouped into series, ordered along the body axis, converted to Hounsfield units.

Only pixel values and geometry leave this module. Names, IDs, dates, accession numbers and institutions are
never read out of the datasets, so nothing identifying can reach a result, a log line or an error message.

Headers are read first and every cap is checked on them, before any pixel is decoded. Pixels are then decoded
as the analysis asks for them, at most `_AHEAD` slices ahead, by `threads` threads, so the model scores one
batch while the next slices decode. JPEG Lossless frames are decoded by libjpeg-turbo (`inference.lossless_jpeg`),
which releases the GIL as onnxruntime and most numpy work do; that is where the overlap comes from (pylibjpeg,
pydicom's default for the other JPEG syntaxes, holds it).
The analysis's per-slice work (gate, model input) runs in the same threads right after each slice is
decoded: done in the consuming thread, every numpy call there would wait for a whole frame's decoding to give
the GIL back, and the slices would be gated one numpy call per decoded frame. Worker processes
were measured too: on two cores shared with the model's threads they were slower than threads, and they
would re-import the caller's main module and escape a per-process memory limit. Each slice is kept as int16
Hounsfield units, and a file's pixel bytes are dropped once its frames are decoded.

Asked for slabs (`slab_mm`), a thin-slice series (its slices under half a slab apart) is handed over as slabs:
the mean Hounsfield units of the consecutive slices within each `slab_mm` along the slice normal, as a
scanner's thick reconstruction would show them. Each slab is decoded and averaged by one thread.
"""

from __future__ import annotations

import io
import zlib
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from pydicom import Dataset, dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import _read_file_meta_info, read_dataset, read_preamble
from pydicom.multival import MultiValue
from pydicom.pixels import apply_modality_lut, get_decoder
from pydicom.tag import Tag
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

from inference.errors import InputError
from inference.limits import Limits
from inference.lossless_jpeg import decode_frame
from inference.scan import Series, Slice, SliceWork

_AXIAL_MIN_COSINE = 0.8  # slice normal within about 37° of the body axis (gantry tilt included) counts as axial
_HU_RANGE = (-32768, 32767)
_AHEAD = 64  # slices decoded ahead of the analysis: keeps the threads busy while the model runs a batch
_PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"  # (7FE0,0010) in Explicit VR Little Endian
_PIXEL_DATA_TRIES = 8  # look-alikes of that tag inside other values, parsed before giving up on sizing
_INFLATE_CHUNK = 2**20
_MAX_HEADER_BYTES = 16 * 2**20  # what a deflated file may inflate to before its Pixel Data starts
_TRAILER_BYTES = 2**20  # what may follow the pixels (padding, signatures)
_DAMAGED_IMAGE = "A DICOM file is damaged or incomplete: its image could not be decoded."
_INFLATES_TOO_FAR = (
    "The DICOM file is compressed (deflated) and would expand far more than a scan does. It was not opened."
)


def is_dicom(data: bytes) -> bool:
    """True when the bytes carry the DICOM part-10 preamble."""
    return data[128:132] == b"DICM"


def read_series(
    files: Iterable[bytes], limits: Limits, *, strict: bool, threads: int = 1, slab_mm: float | None = None
) -> list[Series]:
    """Every image series among the files, decoded, ordered from the lowest slice to the highest.

    With `strict`, a file that is not DICOM is an error (a single upload); otherwise it is skipped (a ZIP or
    folder may hold a README or a DICOMDIR beside the images). With `slab_mm`, a thin-slice series comes as slabs.
    """
    series = scan_series(files, limits, strict=strict, threads=threads, slab_mm=slab_mm)
    for item in series:
        for _ in item.stream():
            pass
    return series


def scan_series(
    files: Iterable[bytes], limits: Limits, *, strict: bool, threads: int = 1, slab_mm: float | None = None
) -> list[Series]:
    """Every image series among the files, as `read_series`, with headers read and checked but pixels not yet
    decoded: each series decodes its slices while `Series.stream()` is consumed.

    The files are parsed one at a time, so an iterator of them is never held in memory all at once.
    """
    datasets = [ds for ds in (_parse(data, limits, strict=strict) for data in files) if ds is not None]
    if not datasets:
        raise InputError("No DICOM images were found. HemoWatch reads DICOM files, a ZIP or folder of them, or PNG/JPEG pictures.")
    frames = sum(_frame_count(ds) for ds in datasets)
    if frames > limits.max_slices:
        raise InputError(f"The scan has {frames} slices; at most {limits.max_slices} can be analysed at once.")
    pixels = sum(_pixel_count(ds) for ds in datasets)
    if pixels > limits.max_scan_pixels:
        raise InputError(
            f"The scan has {pixels / 1e6:.0f} million pixels; at most {limits.max_scan_pixels / 1e6:.0f} million "
            "can be analysed at once."
        )
    groups: dict[str, list[Dataset]] = {}
    for ds in datasets:
        groups.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append(ds)
    ordered = sorted(groups.values(), key=lambda group: _series_number(group[0]) or 0)
    return [_series(group, ordinal, max(1, threads), slab_mm) for ordinal, group in enumerate(ordered, start=1)]


def _parse(data: bytes, limits: Limits, *, strict: bool) -> Dataset | None:
    try:
        ds = _dataset(data, limits)
    except (InputError, MemoryError):  # a file too large for the memory allowed is not a damaged one
        raise
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
    _check_image_size(ds, limits)
    _check_decodable(ds)
    return ds


def _dataset(data: bytes, limits: Limits) -> Dataset:
    """The dataset of one file; a deflated one is inflated within caps (pydicom would inflate it unbounded)."""
    if not is_dicom(data) or not _may_be_deflated(data):
        return dcmread(io.BytesIO(data))  # raises InvalidDicomError, as for any file without the preamble
    stream = DicomBytesIO(data)
    read_preamble(stream, force=False)
    meta = _read_file_meta_info(stream)
    if meta.get("TransferSyntaxUID") != DeflatedExplicitVRLittleEndian:
        return dcmread(io.BytesIO(data))
    ds = read_dataset(DicomBytesIO(_inflate(data[stream.tell() :], limits)), False, True)
    ds.file_meta = FileMetaDataset(meta)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian  # what the dataset is once inflated
    ds.set_original_encoding(False, True)
    return ds


def _may_be_deflated(data: bytes) -> bool:
    """False only when the Deflated syntax's UID is nowhere in the file, so its meta cannot name it: such files
    are read once by pydicom, not their meta first (a millisecond each). The whole file is searched, as pydicom
    reads every meta element whatever the meta's group length says."""
    return DeflatedExplicitVRLittleEndian.encode() in data


def _inflate(deflated: bytes, limits: Limits) -> bytes:
    """A deflated dataset inflated a megabyte at a time, stopped as soon as it outgrows what it can hold.

    Until the Pixel Data element is found the cap is `_MAX_HEADER_BYTES`; from then on it is the header
    plus the pixels its Rows, Columns, Number of Frames and Bits Allocated declare (themselves within the
    pixel caps), plus a little trailer. Throughout, the ZIP caps apply too: `max_uncompressed_bytes` and
    `max_compression_ratio` times the deflated size.
    """
    ratio_cap = min(limits.max_uncompressed_bytes, int(max(len(deflated), 1) * limits.max_compression_ratio))
    cap, sized, searched, tries = min(ratio_cap, _MAX_HEADER_BYTES), False, 0, _PIXEL_DATA_TRIES
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    inflated = bytearray()
    pending = deflated
    try:
        while True:
            chunk = inflater.decompress(pending, _INFLATE_CHUNK)
            pending = inflater.unconsumed_tail
            inflated += chunk
            while not sized and tries and (found := inflated.find(_PIXEL_DATA_TAG, searched)) >= 0:
                searched = found + 1
                if inflated[found + 4 : found + 8] not in (b"OB\0\0", b"OW\0\0"):
                    continue
                tries -= 1
                header = _header(bytes(inflated[:found]))
                if header is not None:
                    _check_image_size(header, limits)
                    cap, sized = min(ratio_cap, found + 12 + _pixel_bytes(header) + _TRAILER_BYTES), True
            searched = max(searched, len(inflated) - len(_PIXEL_DATA_TAG) + 1)
            if len(inflated) > cap:
                raise InputError(_INFLATES_TOO_FAR)
            if not chunk and not pending:
                return bytes(inflated)
    except zlib.error as error:
        raise InputError("The DICOM file is damaged or incomplete.") from error


def _header(data: bytes) -> Dataset | None:
    """The elements before a candidate Pixel Data tag, or None when the tag was only bytes inside a value."""
    try:
        header = read_dataset(DicomBytesIO(data), False, True)
        return header if "Rows" in header and "Columns" in header else None
    except Exception:  # a false match cuts an element in two; pydicom reports that in several ways
        return None


def _check_image_size(ds: Dataset, limits: Limits) -> None:
    """Each frame within the picture limit, checked on the header before anything is decoded."""
    rows, columns = _int(ds.get("Rows")) or 0, _int(ds.get("Columns")) or 0
    if rows * columns > limits.max_image_pixels:
        raise InputError(
            f"A DICOM image is {columns} × {rows} pixels, larger than HemoWatch accepts "
            f"({limits.max_image_pixels:,} pixels at most)."
        )


def _check_decodable(ds: Dataset) -> None:
    _check_transfer_syntax(ds)
    if str(ds.get("PhotometricInterpretation", "MONOCHROME2")).startswith(("RGB", "YBR", "PALETTE")):
        raise InputError("The DICOM holds a colour image (for example a screenshot), not CT slices.")


def _pixel_count(ds: Dataset) -> int:
    return (_int(ds.get("Rows")) or 0) * (_int(ds.get("Columns")) or 0) * _frame_count(ds)


def _pixel_bytes(ds: Dataset) -> int:
    samples = _int(ds.get("SamplesPerPixel")) or 1
    return _pixel_count(ds) * samples * (((_int(ds.get("BitsAllocated")) or 16) + 7) // 8)


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


def _series(datasets: Sequence[Dataset], ordinal: int, threads: int, slab_mm: float | None) -> Series:
    first = datasets[0]
    modality = str(first.get("Modality", "")).upper() or "unknown modality"
    frames = _order([frame for ds in datasets for frame in _frames(ds)])
    slabs = _slabs(frames, slab_mm) if slab_mm else [[frame] for frame in frames]
    number = _series_number(first) or ordinal
    warnings = []
    if modality != "CT":
        warnings.append(f"Modality is {modality}, not CT")
    normal = _normal(first, 0 if _frame_count(first) > 1 else None)
    if normal is not None and abs(normal[2]) < _AXIAL_MIN_COSINE:
        warnings.append("The series is not axial; the model was trained on axial slices")
    count = f"{len(frames)} slice{'s' if len(frames) != 1 else ''}"
    if len(slabs) < len(frames):
        count += f" as {len(slabs)} slabs of {slab_mm:g} mm"
    return Series(
        label=f"series {number} ({modality}, {count})",
        slices=[],
        is_ct=modality == "CT",
        warnings=warnings,
        pending=_Decoding(slabs, threads),
        n_slices=len(slabs),
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


def _slabs(frames: list[_Frame], slab_mm: float) -> list[list[_Frame]]:
    """The frames in slabs of `slab_mm` along the slice normal, counted from the lowest frame, when they lie under
    half a slab apart (the median gap) and alike (same size and pixel spacing); otherwise one frame each."""
    alone = [[frame] for frame in frames]
    positions = [frame.position for frame in frames if frame.position is not None]
    if len(frames) < 2 or len(positions) < len(frames) or float(np.median(np.diff(positions))) >= slab_mm / 2:
        return alone
    if len({(_int(f.dataset.get("Rows")), _int(f.dataset.get("Columns")), _spacing(f.dataset, f.index))
            for f in frames}) > 1:
        return alone
    slabs: dict[int, list[_Frame]] = {}
    for frame, position in zip(frames, positions):
        slabs.setdefault(int((position - positions[0]) // slab_mm), []).append(frame)
    return list(slabs.values())


class _Decoding:
    """The series' slabs of frames to decode, once: a second call yields nothing (the slices are in
    `Series.slices`)."""

    def __init__(self, slabs: list[list[_Frame]], threads: int) -> None:
        self._slabs: list[list[_Frame]] | None = slabs
        self._threads = threads

    def __call__(self, work: SliceWork) -> Iterator[tuple[Slice, object]]:
        slabs, self._slabs = self._slabs, None
        return _decoded(slabs or [], self._threads, work)


def _decoded(slabs: list[list[_Frame]], threads: int, work: SliceWork) -> Iterator[tuple[Slice, object]]:
    """The slabs' slices in order with `work(slice)`, decoded and worked on by `threads` threads at most
    `_AHEAD` frames ahead of the reader.

    Nothing starts until the first slice is asked for; closing the iterator early stops the threads.
    """
    frames_left = Counter(id(frame.dataset) for slab in slabs for frame in slab)
    waiting: deque[tuple[list[_Frame], Future[tuple[Slice, object]]]] = deque()
    upcoming = iter(slabs)
    executor = ThreadPoolExecutor(threads, thread_name_prefix="dicom-decode")
    try:
        while True:
            while sum(len(slab) for slab, _ in waiting) < _AHEAD and (slab := next(upcoming, None)) is not None:
                waiting.append((slab, executor.submit(_decoded_slice, slab, work)))
            if not waiting:
                return
            slab, future = waiting.popleft()
            done = future.result()
            for frame in slab:
                frames_left[id(frame.dataset)] -= 1
                if not frames_left[id(frame.dataset)]:
                    del frame.dataset.PixelData  # the pixels now live in the slices; drop the file's copy
            yield done
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def _decoded_slice(slab: list[_Frame], work: SliceWork) -> tuple[Slice, object]:
    """One slab's slice (a lone frame's, or the mean of several, rounded) with `work` done on it."""
    first = slab[0]
    hu = _frame_hu(first)
    if len(slab) > 1:
        total = hu.astype(np.int32)
        for frame in slab[1:]:
            total += _frame_hu(frame)
        hu = np.rint(total / len(slab)).astype(np.int16)
    decoded = Slice(hu=hu, spacing_mm=_spacing(first.dataset, first.index))
    return decoded, work(decoded)


def _frame_hu(frame: _Frame) -> np.ndarray:
    modality = _lookup(frame.dataset, frame.index, "PixelValueTransformationSequence")
    return decode_hu(frame.dataset, frame.index, modality)


def decode_hu(ds: Dataset, index: int | None, modality: Dataset) -> np.ndarray:
    """One frame of a dataset's pixels in Hounsfield units, rounded to int16, through the modality LUT of
    `modality` (rescale slope and intercept, or a LUT sequence)."""
    try:
        stored = decode_frame(ds, index)
        if stored.ndim != 2:
            raise InputError("A DICOM image has an unexpected shape and could not be read.")
        return _hounsfield(stored, modality)
    except InputError:
        raise
    except Exception as error:  # truncated pixel data and inconsistent headers surface as assorted errors
        raise InputError(_DAMAGED_IMAGE) from error


def _hounsfield(stored: np.ndarray, modality: Dataset) -> np.ndarray:
    """Stored values through the modality LUT, clipped and rounded to int16.

    The usual CT rescale (slope 1, a whole-number intercept) is done in integers, which gives the same values
    as the general path without its float64 copy of the slice.
    """
    slope, intercept = modality.get("RescaleSlope", 1), modality.get("RescaleIntercept", 0)
    if (
        stored.dtype.kind in "iu"
        and "ModalityLUTSequence" not in modality
        and float(slope) == 1
        and float(intercept).is_integer()
    ):
        hu = stored.astype(np.int64 if stored.dtype.itemsize >= 4 else np.int32) + int(float(intercept))
        return np.clip(hu, *_HU_RANGE).astype(np.int16)
    hu = np.clip(np.asarray(apply_modality_lut(stored, modality), dtype=np.float32), *_HU_RANGE)
    return np.rint(hu, out=hu).astype(np.int16)


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
