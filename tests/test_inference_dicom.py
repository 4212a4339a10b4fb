"""DICOM reading on synthetic files written with pydicom: Hounsfield units, frames, ordering, series, bad files."""

from __future__ import annotations

import io
import json
import logging
import threading
import zipfile
from collections.abc import Sequence

import numpy as np
import pytest
from pydicom import Dataset, dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import MPEG2MPML, CTImageStorage, ExplicitVRLittleEndian, generate_uid

from core.settings import DEFAULT_MODEL
from inference.analyzer import Analyzer
from inference.archive import read_zip
from inference.dicom import read_series, scan_series
from inference.errors import InputError
from inference.limits import Limits
from inference.scan import Series, Slice

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
IDENTITY = {
    "PatientName": "Doe^Jane",
    "PatientID": "MRN-4711-0815",
    "PatientBirthDate": "19610203",
    "AccessionNumber": "ACC-99182",
    "InstitutionName": "Saint Example Hospital",
    "ReferringPhysicianName": "Welby^Marcus",
}


def head_phantom(size: int = 256, brain_hu: float = 35.0) -> np.ndarray:
    """An axial head in Hounsfield units: scalp, a 6 mm skull ring and brain, on air, at 1 mm per pixel."""
    rows, cols = np.mgrid[:size, :size]
    radius = np.hypot(rows - size / 2, cols - size / 2)
    hu = np.full((size, size), -1000.0)
    hu[radius < 95] = 40.0  # scalp
    hu[radius < 90] = 1200.0  # skull
    hu[radius < 84] = brain_hu
    return hu


def dicom_bytes(
    hu: np.ndarray,
    *,
    slope: float = 1.0,
    intercept: float = -1024.0,
    signed: bool = False,
    z: float | None = 0.0,
    orientation: Sequence[float] = AXIAL,
    instance: int | None = 1,
    series_uid: str = "1.2.826.0.1.3680043.8.498.1",
    series_number: int = 1,
    modality: str = "CT",
    identity: bool = True,
) -> bytes:
    """A CT file (multi-frame when `hu` is 3-D) storing `hu` through the given rescale."""
    stored = np.rint((np.asarray(hu) - intercept) / slope)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.SOPClassUID = CTImageStorage
    ds.Modality = modality
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    if instance is not None:
        ds.InstanceNumber = instance
    if z is not None:
        ds.ImagePositionPatient = [-128.0, -128.0, z]
    ds.ImageOrientationPatient = list(orientation)
    ds.PixelSpacing = [1.0, 1.0]
    ds.RescaleSlope = slope
    ds.RescaleIntercept = intercept
    if identity:
        for keyword, value in IDENTITY.items():
            setattr(ds, keyword, value)
    ds.set_pixel_data(stored.astype(np.int16 if signed else np.uint16), "MONOCHROME2", 16)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def read_one(data: bytes) -> Series:
    (series,) = read_series([data], Limits(), strict=True)
    return series


@pytest.mark.parametrize(
    ("slope", "intercept", "signed"),
    [(1.0, -1024.0, False), (2.0, -1000.0, False), (0.5, -1024.0, False), (1.0, 0.0, True), (1.0, -1024.0, True)],
)
def test_stored_values_become_hounsfield_units(slope: float, intercept: float, signed: bool) -> None:
    hu = head_phantom(64)
    hu[0, 0] = -1024.0 if signed else hu[0, 0]
    series = read_one(dicom_bytes(hu, slope=slope, intercept=intercept, signed=signed))
    np.testing.assert_allclose(series.slices[0].hu, np.rint(hu), atol=1)


def test_signed_pixels_keep_their_negative_values() -> None:
    hu = np.full((32, 32), -1000.0)
    hu[8:24, 8:24] = 60.0
    series = read_one(dicom_bytes(hu, intercept=0.0, signed=True))
    assert series.slices[0].hu.min() == -1000
    assert series.slices[0].hu.max() == 60


def test_every_frame_of_a_multi_frame_file_is_a_slice() -> None:
    frames = np.stack([head_phantom(64, brain_hu=value) for value in (20.0, 35.0, 50.0)])
    series = read_one(dicom_bytes(frames, slope=1.0, intercept=-1024.0))
    assert len(series.slices) == 3
    assert [int(item.hu[32, 32]) for item in series.slices] == [20, 35, 50]


def test_slices_follow_the_slice_normal_not_the_file_order() -> None:
    tilted = (1.0, 0.0, 0.0, 0.0, 0.9483237, -0.3173047)  # 18.5° gantry tilt
    levels = {12.0: 10.0, -4.0: 30.0, 4.0: 20.0, -12.0: 40.0}  # z -> brain HU, shuffled
    files = [
        dicom_bytes(head_phantom(64, brain_hu=brain), z=z, orientation=tilted, instance=index)
        for index, (z, brain) in enumerate(levels.items(), start=1)
    ]
    (series,) = read_series(files, Limits(), strict=False)
    # the normal of this tilt points up and back: a larger z lies further along it
    assert [int(item.hu[32, 32]) for item in series.slices] == [40, 30, 20, 10]


def test_instance_number_orders_slices_without_positions() -> None:
    files = [dicom_bytes(head_phantom(64, brain_hu=10.0 * n), z=None, instance=n) for n in (3, 1, 2)]
    (series,) = read_series(files, Limits(), strict=False)
    assert [int(item.hu[32, 32]) for item in series.slices] == [10, 20, 30]


def test_a_zip_with_two_series_gives_one_series_each() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for n in range(3):
            archive.writestr(f"a/{n}.dcm", dicom_bytes(head_phantom(64), z=n, series_uid="1.2.3.1", series_number=4))
        for n in range(2):
            archive.writestr(f"b/{n}.dcm", dicom_bytes(head_phantom(64), z=n, series_uid="1.2.3.2", series_number=2))
        archive.writestr("README.txt", "not an image")
    series = read_series(read_zip(buffer.getvalue(), Limits()), Limits(), strict=False)
    assert [item.label for item in series] == ["series 2 (CT, 2 slices)", "series 4 (CT, 3 slices)"]


def test_non_ct_modality_is_warned_about() -> None:
    series = read_one(dicom_bytes(head_phantom(64), modality="MR"))
    assert series.warnings == ["Modality is MR, not CT"]
    assert not series.is_ct


def test_unsupported_transfer_syntax_is_named() -> None:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = MPEG2MPML
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = CTImageStorage
    ds.Modality = "CT"
    ds.Rows = ds.Columns = 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelData = encapsulate([bytes(64)])
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    with pytest.raises(InputError, match=r"MPEG2 .*1\.2\.840\.10008\.1\.2\.4\.100"):
        read_one(buffer.getvalue())


def test_truncated_file_is_an_input_error() -> None:
    data = dicom_bytes(head_phantom(64))
    with pytest.raises(InputError, match="damaged or incomplete"):
        read_one(data[: len(data) // 2])


def corrupt_position(data: bytes) -> bytes:
    """A letter inside ImagePositionPatient (the file made by `dicom_bytes` with z=12.5)."""
    return data.replace(b"-128.0\\-128.0\\12.5", b"-128.0\\-128.0\\1x.5", 1)


def unknown_modality_vr(data: bytes) -> bytes:
    """Modality (0008,0060) written with a value representation that does not exist."""
    return data.replace(b"\x08\x00\x60\x00CS", b"\x08\x00\x60\x00ZZ", 1)


@pytest.mark.parametrize(
    ("corrupt", "named"),
    [(corrupt_position, r"ImagePositionPatient \(0020,0032\)"), (unknown_modality_vr, r"Modality \(0008,0060\)")],
)
def test_a_corrupt_header_element_is_named(corrupt, named: str) -> None:
    data = corrupt(dicom_bytes(head_phantom(64), z=12.5))
    assert data != dicom_bytes(head_phantom(64), z=12.5)
    with pytest.raises(InputError, match=named) as raised:
        read_one(data)
    assert "1x.5" not in str(raised.value)  # the value itself is never shown
    in_zip = io.BytesIO()
    with zipfile.ZipFile(in_zip, "w") as archive:
        archive.writestr("a.dcm", data)
    with pytest.raises(InputError, match=named):
        read_series(read_zip(in_zip.getvalue(), Limits()), Limits(), strict=False)


def test_text_is_not_taken_for_dicom() -> None:
    with pytest.raises(InputError, match="not a DICOM file"):
        read_one(b"Patient list\nDoe, Jane\n" * 20)


def test_slice_limit_is_checked_before_decoding() -> None:
    frames = np.stack([head_phantom(32)] * 5)
    with pytest.raises(InputError, match="5 slices; at most 4"):
        read_series([dicom_bytes(frames)], Limits(max_slices=4), strict=True)


@pytest.fixture(scope="module")
def analyzer() -> Analyzer:
    if not DEFAULT_MODEL.is_file():
        pytest.skip(f"the model is not at {DEFAULT_MODEL} (python -m training builds it)")
    return Analyzer(DEFAULT_MODEL, threads=1)


def test_results_and_logs_carry_nothing_that_identifies_the_patient(
    analyzer: Analyzer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    files = [dicom_bytes(head_phantom(), z=z, instance=n) for n, z in enumerate((0.0, 5.0, 10.0), start=1)]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for n, data in enumerate(files):
            archive.writestr(f"{n}.dcm", data)
    (result,) = analyzer.analyze_bytes(buffer.getvalue(), "study.zip")
    assert result.n_assessable == 3
    text = json.dumps(result.to_json_dict("study.zip")) + repr(result) + caplog.text
    for value in IDENTITY.values():
        for part in value.split("^"):
            assert part not in text
    assert "19610203" not in text and "1961" not in text


def test_a_series_without_brain_is_not_assessable_with_a_reason(analyzer: Analyzer) -> None:
    air = np.full((64, 64), -1000.0)
    files = [dicom_bytes(air, z=z, instance=n) for n, z in enumerate((0.0, 5.0, 10.0), start=1)]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for n, data in enumerate(files):
            archive.writestr(f"{n}.dcm", data)
    (result,) = analyzer.analyze_bytes(buffer.getvalue(), "empty-field.zip")
    assert (result.verdict, result.n_assessable, result.overlay_png) == ("not_assessable", 0, None)
    assert result.reason.startswith("None of the 3 slices can be assessed: mostly bone or little brain")


def test_an_mr_image_is_warned_about_and_not_assessed(analyzer: Analyzer) -> None:
    (result,) = analyzer.analyze_bytes(dicom_bytes(head_phantom(), modality="MR"), "brain.dcm")
    assert result.verdict == "not_assessable"
    assert result.reason == "Not a CT image."
    assert result.warnings == ["Modality is MR, not CT"]


def test_enhanced_multi_frame_uses_functional_groups_for_units_and_order() -> None:
    frames = np.stack([head_phantom(64, brain_hu=value) for value in (10.0, 20.0, 30.0)])
    ds = dcmread(io.BytesIO(dicom_bytes(frames, slope=2.0, intercept=-1000.0, identity=False)))
    for keyword in ("RescaleSlope", "RescaleIntercept", "ImagePositionPatient", "ImageOrientationPatient"):
        delattr(ds, keyword)
    rescale = Dataset()
    rescale.RescaleSlope, rescale.RescaleIntercept = 2.0, -1000.0
    orientation = Dataset()
    orientation.ImageOrientationPatient = list(AXIAL)
    shared = Dataset()
    shared.PixelValueTransformationSequence = [rescale]
    shared.PlaneOrientationSequence = [orientation]
    ds.SharedFunctionalGroupsSequence = [shared]
    per_frame = []
    for z in (30.0, 20.0, 10.0):  # stored from the top down
        position = Dataset()
        position.ImagePositionPatient = [0.0, 0.0, z]
        group = Dataset()
        group.PlanePositionSequence = [position]
        per_frame.append(group)
    ds.PerFrameFunctionalGroupsSequence = per_frame
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    series = read_one(buffer.getvalue())
    assert [int(item.hu[32, 32]) for item in series.slices] == [30, 20, 10]


def test_per_slice_work_runs_in_the_decoding_threads_in_slice_order_and_decoding_happens_once() -> None:
    files = [dicom_bytes(head_phantom(64) + z, z=float(-z)) for z in range(6)]
    (series,) = scan_series(files, Limits(), strict=False, threads=2)

    def work(item: Slice) -> tuple[int, str]:
        return int(item.hu[0, 0]), threading.current_thread().name

    streamed = list(series.stream(work))
    corners = [done[0] for _, done in streamed]
    assert corners == list(range(corners[0], corners[0] - 6, -1))  # lowest slice (brightest phantom) first
    assert corners == [int(item.hu[0, 0]) for item, _ in streamed]
    assert all(done[1].startswith("dicom-decode") for _, done in streamed)
    assert [item for item, _ in streamed] == series.slices
    again = list(series.stream(work))  # the slices already decoded, worked on where the caller is
    assert [item for item, _ in again] == series.slices
    assert {done[1] for _, done in again} == {threading.current_thread().name}
