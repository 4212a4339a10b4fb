"""The Analyzer end to end with the shipped ONNX model: real scans in, verdicts and heat-maps out, bad input refused."""

from __future__ import annotations

import io
import struct
import tracemalloc
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

from core.settings import DEFAULT_MODEL
from inference.analyzer import Analyzer
from inference.archive import read_zip
from inference.errors import InputError
from inference.limits import Limits
from inference.model import ModelCard
from inference.overlay import MAX_SIDE
from inference.scan import Window


@pytest.fixture(scope="module")
def analyzer() -> Analyzer:
    if not DEFAULT_MODEL.is_file():
        pytest.skip(f"the model is not at {DEFAULT_MODEL} (python -m training builds it)")
    return Analyzer(DEFAULT_MODEL, threads=2)


@pytest.fixture(scope="module")
def ge_zip(ge_series_dir: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(ge_series_dir.glob("*.dcm"), reverse=True):  # the order inside the ZIP must not matter
            archive.write(path, f"scan/{path.name}")
    return buffer.getvalue()


def test_dicom_slices_are_windowed_as_the_model_card_says_unless_configured(
    analyzer: Analyzer, ge_zip: bytes
) -> None:
    window = ModelCard.beside(DEFAULT_MODEL).window
    (by_card,) = analyzer.analyze_bytes(ge_zip, "ge.zip")
    (same,) = Analyzer(DEFAULT_MODEL, window=window).analyze_bytes(ge_zip, "ge.zip")
    (other,) = Analyzer(DEFAULT_MODEL, window=Window(window.center + 10, window.width)).analyze_bytes(ge_zip, "ge.zip")
    assert by_card.probability == same.probability
    assert other.probability != pytest.approx(by_card.probability, abs=1e-4)


def test_ge_series_verdict_rests_on_assessable_slices(analyzer: Analyzer, ge_zip: bytes) -> None:
    messages: list[str] = []
    (result,) = analyzer.analyze_bytes(ge_zip, "ge.zip", progress=messages.append)
    assert result.series_label == "series 2 (CT, 28 slices)"
    assert (result.n_slices, result.n_assessable) == (28, 19)
    card = ModelCard.beside(DEFAULT_MODEL)
    assert result.threshold == card.study.threshold, "a series is judged by its calibrated study probability"
    # The shipped model's figures for this series: flagged, most suspicious on slice 12 (mid-brain).
    assert result.verdict == "hemorrhage"
    assert result.probability == pytest.approx(0.768, abs=1e-3)
    index, probability = result.top_slice
    assert index == 12 and probability == pytest.approx(0.701, abs=1e-3)
    assert messages[0] == "Read 28 slices"
    assert messages[-1] == f"Analysed {result.n_assessable}/{result.n_assessable} slices"
    overlay = Image.open(io.BytesIO(result.overlay_png))
    assert overlay.format == "PNG" and overlay.mode == "RGB"
    assert max(overlay.size) <= MAX_SIDE


def test_folder_zip_and_zip_file_of_the_same_series_agree(
    analyzer: Analyzer, ge_zip: bytes, ge_series_dir: Path, tmp_path: Path
) -> None:
    (from_zip,) = analyzer.analyze_bytes(ge_zip, "ge.zip")
    (from_folder,) = analyzer.analyze_path(ge_series_dir)
    (tmp_path / "ge.zip").write_bytes(ge_zip)
    (from_zip_file,) = analyzer.analyze_path(tmp_path / "ge.zip")
    for result in (from_folder, from_zip_file):
        assert result.top_slice == from_zip.top_slice
        assert result.n_assessable == from_zip.n_assessable
        assert result.probability == pytest.approx(from_zip.probability, abs=1e-6)


def test_concurrent_analyses_share_one_session(analyzer: Analyzer, head_ct_dir: Path) -> None:
    paths = sorted((head_ct_dir / "images").glob("*.png"))[:8]
    alone = [analyzer.analyze_path(path)[0].probability for path in paths]
    with ThreadPoolExecutor(max_workers=4) as pool:
        together = [results[0].probability for results in pool.map(analyzer.analyze_path, paths)]
    assert together == pytest.approx(alone, abs=1e-5)


def test_labelled_slices_are_scored_with_the_card_threshold(analyzer: Analyzer, head_ct_dir: Path) -> None:
    (result,) = analyzer.analyze_path(head_ct_dir / "images" / "000.png")  # labelled haemorrhage
    assert result.n_slices == result.n_assessable == 1
    assert result.threshold == analyzer.model_info.threshold
    assert result.verdict == "hemorrhage" and result.probability == pytest.approx(0.9995, abs=1e-3)
    assert result.model.sha256 == analyzer.model_info.sha256


def test_a_colour_photo_is_not_assessable(analyzer: Analyzer) -> None:
    photo = Image.new("RGB", (320, 240), (30, 120, 200))
    photo.paste((220, 180, 40), (40, 40, 200, 160))
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG")
    (result,) = analyzer.analyze_bytes(buffer.getvalue(), "holiday.jpg")
    assert result.verdict == "not_assessable"
    assert result.probability is None and result.top_slice is None and result.overlay_png is None
    assert "colour" in result.reason


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims the given size, with almost no pixel data behind it."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _zip_of(name: str, content: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, content)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "filename", "message"),
    [
        (b"", "empty.dcm", "empty"),
        (b"name,dob\nDoe,1961\n" * 50, "notes.dcm", "not a DICOM file"),
        (b"just some words", "notes.txt", "PNG, JPEG, DICOM"),
        (_png_claiming(50000, 50000), "huge.png", "larger than HemoWatch accepts"),
        (_png_claiming(300, 300)[:40], "cut.png", "damaged or incomplete"),
        (_zip_of("bomb.dcm", bytes(20 * 2**20)), "bomb.zip", "expands far more"),
        (_zip_of("readme.txt", b"hello"), "nothing.zip", "No DICOM images"),
        (b"PK\x03\x04" + bytes(100), "broken.zip", "ZIP file is damaged"),
    ],
    ids=["empty", "text-as-dcm", "text", "png-bomb", "truncated-png", "zip-bomb", "zip-without-dicom", "broken-zip"],
)
def test_bad_input_gives_a_plain_input_error(analyzer: Analyzer, data: bytes, filename: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as caught:
        analyzer.analyze_bytes(data, filename)
    assert "Traceback" not in str(caught.value)


def test_upload_and_archive_caps_are_configurable(head_ct_dir: Path) -> None:
    if not DEFAULT_MODEL.is_file():
        pytest.skip(f"the model is not at {DEFAULT_MODEL}")
    strict = Analyzer(
        DEFAULT_MODEL,
        threads=1,
        limits=Limits(max_upload_bytes=1000, max_uncompressed_bytes=500, max_image_pixels=100 * 100),
    )
    with pytest.raises(InputError, match="at most 0 MB"):
        strict.analyze_path(head_ct_dir / "images" / "000.png")
    with pytest.raises(InputError, match="10,000 pixels at most"):
        strict.analyze_bytes(_png_claiming(101, 100), "wide.png")
    with pytest.raises(InputError, match="expands far more"):
        strict.analyze_bytes(_zip_of("a.dcm", b"x" * 600), "small.zip")


def test_missing_path_is_an_input_error(analyzer: Analyzer, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="No such file"):
        analyzer.analyze_path(tmp_path / "absent.zip")


def _lying_zip(content: bytes, declared: int) -> bytes:
    """A ZIP whose directory (local header and central directory) says its member is `declared` bytes."""
    data = bytearray(_zip_of("a.dcm", content))
    real = len(content).to_bytes(4, "little")
    for header, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):  # uncompressed size field of each header
        at = data.index(header) + offset
        assert data[at : at + 4] == real
        data[at : at + 4] = declared.to_bytes(4, "little")
    return bytes(data)


def test_a_zip_bomb_is_refused_from_its_directory_without_inflating_anything(tmp_path: Path) -> None:
    bomb = _zip_of("bomb.dcm", bytes(64 * 2**20))  # 64 MB of zeros in about 64 kB: 1000 times
    path = tmp_path / "bomb.zip"
    path.write_bytes(bomb)
    tracemalloc.start()
    try:
        for read in (lambda: read_zip(bomb, Limits()), lambda: read_zip(path, Limits())):
            tracemalloc.reset_peak()
            with pytest.raises(InputError, match="expands far more"):
                read()
            assert tracemalloc.get_traced_memory()[1] < 2 * 2**20  # nothing was inflated
    finally:
        tracemalloc.stop()


def test_a_zip_whose_directory_lies_about_sizes_is_read_no_further_than_declared() -> None:
    lying = _lying_zip(bytes(2 * 2**20), declared=1000)  # says 1000 bytes, inflates to 2 MB
    tracemalloc.start()
    try:
        with pytest.raises(InputError, match="expands far more|damaged"):
            list(read_zip(lying, Limits()))
        assert tracemalloc.get_traced_memory()[1] < 2**20
    finally:
        tracemalloc.stop()
