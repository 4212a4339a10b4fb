"""Whole series read in parallel and scored while they decode, and the caps that stop hostile files before their
memory is spent: deflated DICOM bombs, oversized frames and scans, pictures too large to decode."""

from __future__ import annotations

import hashlib
import io
import random
import struct
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from pydicom import Dataset, dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.pixels import apply_modality_lut
from pydicom.uid import CTImageStorage, DeflatedExplicitVRLittleEndian, JPEGLosslessSV1, RLELossless, generate_uid
from test_inference_dicom import AXIAL, dicom_bytes, head_phantom

from core.settings import DEFAULT_MODEL
from inference.analyzer import Analyzer
from inference.archive import read_folder
from inference.dicom import read_series
from inference.errors import InputError
from inference.limits import Limits

# The GE series as it was read before slices were decoded in parallel: every slice's int16 Hounsfield units,
# lowest slice first, hashed.
GE_HU_SHA256 = "b9f11236dfdde50d12b3566822e91d0ab3effd7e3f3b5f086bea6384932e19c1"
MB = 2**20


def peak_allocated(run: Callable[[], object]) -> int:
    """Bytes allocated at the peak while `run()` ran (it may raise)."""
    tracemalloc.start()
    try:
        run()
    except InputError:
        pass
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak


def sequential_hu(files: list[bytes]) -> list[np.ndarray]:
    """The slices as a plain single-threaded pydicom reading gives them, ordered along the slice normal."""
    datasets = [dcmread(io.BytesIO(data)) for data in files]

    def height(ds: Dataset) -> float:
        orientation = np.asarray(ds.ImageOrientationPatient, dtype=float)
        return float(np.dot(np.cross(orientation[:3], orientation[3:]), np.asarray(ds.ImagePositionPatient, float)))

    ordered = sorted(datasets, key=height)
    return [np.rint(np.clip(apply_modality_lut(ds.pixel_array, ds), -32768, 32767)).astype(np.int16) for ds in ordered]


def rle_series(count: int, size: int = 64) -> list[bytes]:
    """A thin-slice series stored RLE Lossless, 0.625 mm apart, each slice's brain at its own level, files
    shuffled."""
    series_uid = generate_uid()
    files = []
    for number in range(count):
        ds = dcmread(io.BytesIO(dicom_bytes(head_phantom(size, brain_hu=float(number)), z=number * 0.625,
                                            instance=number + 1, series_uid=series_uid, identity=False)))
        ds.compress(RLELossless)
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        files.append(buffer.getvalue())
    random.Random(7).shuffle(files)
    return files


@pytest.fixture(scope="module")
def ge_files(ge_series_dir: Path) -> list[bytes]:
    return [path.read_bytes() for path in sorted(ge_series_dir.glob("*.dcm"))]


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_the_ge_series_reads_as_before_with_any_number_of_threads(ge_files: list[bytes], threads: int) -> None:
    (series,) = read_series(ge_files, Limits(), strict=False, threads=threads)
    assert [item.hu.dtype for item in series.slices] == [np.dtype(np.int16)] * 28
    digest = hashlib.sha256(b"".join(item.hu.tobytes() for item in series.slices)).hexdigest()
    assert digest == GE_HU_SHA256
    for read, expected in zip(series.slices, sequential_hu(ge_files), strict=True):
        np.testing.assert_array_equal(read.hu, expected)


def test_a_thin_slice_series_reads_in_order_in_parallel() -> None:
    files = rle_series(60)
    (parallel,) = read_series(files, Limits(), strict=False, threads=3)
    (single,) = read_series(files, Limits(), strict=False, threads=1)
    assert parallel.label == "series 1 (CT, 60 slices)"
    assert [int(item.hu[32, 32]) for item in parallel.slices] == list(range(60))
    for a, b, expected in zip(parallel.slices, single.slices, sequential_hu(files), strict=True):
        np.testing.assert_array_equal(a.hu, expected)
        np.testing.assert_array_equal(b.hu, expected)


def test_a_thin_slice_series_asked_for_slabs_comes_as_5_mm_slabs_of_mean_units(ge_files: list[bytes]) -> None:
    files = rle_series(60)  # 0.625 mm apart: eight slices to a slab, four in the last
    (slabs,) = read_series(files, Limits(), strict=False, threads=2, slab_mm=5.0)
    assert slabs.label == "series 1 (CT, 60 slices as 8 slabs of 5 mm)"
    assert [int(item.hu[32, 32]) for item in slabs.slices] == [4, 12, 20, 28, 36, 44, 52, 58]  # 3.5, 11.5, … rounded
    thin = sequential_hu(files)
    for number, item in enumerate(slabs.slices):
        expected = np.rint(np.mean(thin[8 * number : 8 * number + 8], axis=0)).astype(np.int16)
        np.testing.assert_array_equal(item.hu, expected)
    (ge,) = read_series(ge_files, Limits(), strict=False, slab_mm=5.0)  # 4 and 7 mm apart: its own slices
    assert hashlib.sha256(b"".join(item.hu.tobytes() for item in ge.slices)).hexdigest() == GE_HU_SHA256


def test_the_analysis_judges_a_thin_slice_series_on_slabs(tmp_path: Path) -> None:
    if not DEFAULT_MODEL.is_file():
        pytest.skip(f"the model is not at {DEFAULT_MODEL}")
    for number, data in enumerate(rle_series(60)):
        (tmp_path / f"{number}.dcm").write_bytes(data)
    (result,) = Analyzer(DEFAULT_MODEL, threads=2).analyze_path(tmp_path)
    assert (result.series_label, result.n_slices) == ("series 1 (CT, 60 slices as 8 slabs of 5 mm)", 8)


def test_a_damaged_slice_deep_in_a_series_is_a_plain_error() -> None:
    files = rle_series(40)
    ds = dcmread(io.BytesIO(files[25]))
    ds.PixelData = encapsulate([b"\x00\x01"])  # an RLE frame that holds no segments
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    files[25] = buffer.getvalue()
    with pytest.raises(InputError, match="damaged or incomplete: its image could not be decoded"):
        read_series(files, Limits(), strict=False, threads=2)


def test_the_ge_verdict_is_the_same_read_in_parallel_or_one_slice_at_a_time(ge_series_dir: Path) -> None:
    if not DEFAULT_MODEL.is_file():
        pytest.skip(f"the model is not at {DEFAULT_MODEL}")
    (parallel,) = Analyzer(DEFAULT_MODEL, threads=2).analyze_path(ge_series_dir)
    (sequential,) = Analyzer(DEFAULT_MODEL, threads=1).analyze_path(ge_series_dir)
    assert (parallel.verdict, parallel.n_slices, parallel.n_assessable) == (
        sequential.verdict, 28, sequential.n_assessable
    )
    assert parallel.probability == pytest.approx(sequential.probability, abs=1e-5)
    assert parallel.top_slice[0] == sequential.top_slice[0]


def test_a_folder_is_read_one_file_at_a_time(tmp_path: Path) -> None:
    for number, data in enumerate(rle_series(3)):
        (tmp_path / f"{number}.dcm").write_bytes(data)
    files = read_folder(tmp_path, Limits())
    assert not isinstance(files, list)
    assert len(next(iter(files))) > 128


# Deflated Explicit VR Little Endian: pydicom itself would inflate the whole file in one call, without a cap.


def _meta(syntax: str) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    buffer = DicomBytesIO()
    buffer.write(bytes(128) + b"DICM")
    write_file_meta_info(buffer, meta, enforce_standard=True)
    return buffer.getvalue()


def _image_header(rows: int = 64, columns: int = 64, frames: int | None = None) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "CT"
    ds.ImagePositionPatient = [0.0, 0.0, 0.0]
    ds.ImageOrientationPatient = list(AXIAL)
    ds.RescaleSlope, ds.RescaleIntercept = 1.0, -1024.0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    if frames is not None:
        ds.NumberOfFrames = frames
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    return ds


def deflated_dicom(ds: Dataset, zeros_after: int = 0, zeros_tag: int = 0xFFFCFFFC) -> bytes:
    """`ds` in the Deflated transfer syntax, followed by an element of `zeros_after` zero bytes, which deflate
    about a thousandfold; compressed a megabyte at a time, so the test never holds the inflated size either."""
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, ds)
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    parts = [deflater.compress(body.getvalue())]
    if zeros_after:
        parts.append(deflater.compress(struct.pack("<HH2sHI", zeros_tag >> 16, zeros_tag & 0xFFFF, b"OB", 0, zeros_after)))
        zeros = bytes(MB)
        parts += [deflater.compress(zeros) for _ in range(zeros_after // MB)]
    parts.append(deflater.flush())
    return _meta(DeflatedExplicitVRLittleEndian) + b"".join(parts)


def test_a_deflated_dicom_is_still_read() -> None:
    hu = head_phantom(64)
    ds = _image_header()
    ds.PixelData = np.rint(hu + 1024).astype(np.uint16).tobytes()
    (series,) = read_series([deflated_dicom(ds)], Limits(), strict=True)
    np.testing.assert_array_equal(series.slices[0].hu, np.rint(hu).astype(np.int16))


@pytest.mark.parametrize(
    ("header", "zeros_tag"),
    [(True, 0xFFFCFFFC), (False, 0x00091010)],
    ids=["padding-after-the-pixels", "no-pixels-in-sight"],
)
def test_a_deflate_bomb_is_refused_before_it_inflates(header: bool, zeros_tag: int) -> None:
    ds = _image_header()
    if header:
        ds.PixelData = bytes(64 * 64 * 2)
    else:
        del ds.Rows  # a header that never reaches its pixels: 1 GiB of a private element instead
    bomb = deflated_dicom(ds, zeros_after=2**30, zeros_tag=zeros_tag)
    assert len(bomb) < 2 * MB

    def read() -> None:
        read_series([bomb], Limits(), strict=True)

    with pytest.raises(InputError, match="deflated.*expand far more than a scan does"):
        read()
    assert peak_allocated(read) < 48 * MB


@pytest.mark.parametrize("meta_length", ["dropped", "understated"])
def test_a_deflate_bomb_is_refused_whatever_its_meta_group_length_says(meta_length: str) -> None:
    ds = _image_header()
    ds.PixelData = bytes(64 * 64 * 2)
    bomb = bytearray(deflated_dicom(ds, zeros_after=256 * MB))
    assert bomb[132:136] == b"\x02\x00\x00\x00"  # (0002,0000): the meta's group length, 12 bytes
    if meta_length == "dropped":  # pydicom reads a meta without it
        bomb[132:144] = b""
    else:  # a length that ends the meta before its transfer syntax
        bomb[140:144] = (4).to_bytes(4, "little")
    with pytest.raises(InputError, match="It was not opened"):
        read_series([bytes(bomb)], Limits(), strict=True)


def test_a_deflate_bomb_through_the_analyzer_gets_the_plain_message() -> None:
    if not DEFAULT_MODEL.is_file():
        pytest.skip(f"the model is not at {DEFAULT_MODEL}")
    ds = _image_header()
    ds.PixelData = bytes(64 * 64 * 2)
    bomb = deflated_dicom(ds, zeros_after=256 * MB)
    with pytest.raises(InputError, match="It was not opened"):
        Analyzer(DEFAULT_MODEL, threads=1).analyze_bytes(bomb, "scan.dcm")


def test_a_deflated_header_declaring_huge_frames_is_refused_from_the_header() -> None:
    ds = _image_header(rows=30000, columns=30000)
    ds.PixelData = bytes(16)
    with pytest.raises(InputError, match="30000 × 30000 pixels, larger than HemoWatch accepts"):
        read_series([deflated_dicom(ds)], Limits(), strict=True)


def _jpeg_lossless_claiming(rows: int, columns: int, frames: int | None = None) -> bytes:
    """A JPEG Lossless CT file whose header declares the given size, with a few bytes of pixel data."""
    ds = _image_header(rows, columns, frames)
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xd9"] * (frames or 1))
    ds["PixelData"].VR = "OB"
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, ds)
    return _meta(JPEGLosslessSV1) + body.getvalue()


def test_pixel_limits_are_checked_on_the_header_before_decoding() -> None:
    def wide() -> None:
        read_series([_jpeg_lossless_claiming(20000, 20000)], Limits(), strict=True)

    with pytest.raises(InputError, match="20000 × 20000 pixels"):
        wide()
    assert peak_allocated(wide) < 8 * MB
    with pytest.raises(InputError, match="524 million pixels; at most 268 million"):
        read_series([_jpeg_lossless_claiming(1024, 1024, frames=500)], Limits(), strict=True)


def _png(width: int, height: int) -> bytes:
    """A real, complete grey PNG of the given size (black), deflated row block by row block."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    deflater = zlib.compressobj(9)
    rows = bytes(width + 1) * 256  # filter byte and pixels, 256 rows at a time
    image = b"".join(deflater.compress(rows) for _ in range(height // 256))
    image += deflater.compress(bytes(width + 1) * (height % 256)) + deflater.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", image) + chunk(b"IEND", b"")


def test_a_9400_pixel_square_png_is_refused_before_its_pixels_are_decoded() -> None:
    if not DEFAULT_MODEL.is_file():
        pytest.skip(f"the model is not at {DEFAULT_MODEL}")
    analyzer = Analyzer(DEFAULT_MODEL, threads=1)
    picture = _png(9400, 9400)

    def analyze() -> None:
        analyzer.analyze_bytes(picture, "export.png")

    with pytest.raises(InputError, match="larger than HemoWatch accepts"):
        analyze()
    assert peak_allocated(analyze) < 8 * MB  # decoding it would take 88 MB at the very least
