"""The slice gate on real slices (the shared GE series and labelled pictures) and on things that are not slices."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from inference.dicom import read_series
from inference.gate import LITTLE_BRAIN, Assessment, assess_hu, assess_slice
from inference.images import read_picture
from inference.limits import Limits


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def gate_picture(image: Image.Image) -> Assessment:
    (scan_slice,) = read_picture(png_bytes(image), Limits()).slices
    return assess_slice(scan_slice)


def test_ge_series_skull_base_and_vertex_are_not_assessable(ge_series_dir: Path) -> None:
    files = [path.read_bytes() for path in sorted(ge_series_dir.glob("*.dcm"))]
    (series,) = read_series(files, Limits(), strict=False)
    assessable = [assess_slice(item).assessable for item in series.slices]
    assert len(assessable) == 28
    assert not any(assessable[:6]), "the lowest six slices are skull base"
    assert not any(assessable[-2:]), "the top two slices are vertex"
    assert all(assessable[10:25]), "slices through the cerebrum are assessable"


def test_every_labelled_training_slice_passes(head_ct_dir: Path) -> None:
    refused = {}
    for path in sorted((head_ct_dir / "images").glob("*.png")):
        (scan_slice,) = read_picture(path.read_bytes(), Limits()).slices
        assessment = assess_slice(scan_slice)
        if not assessment.assessable:
            refused[path.name] = assessment.reason
    assert len(list((head_ct_dir / "images").glob("*.png"))) == 160
    assert refused == {}


def gate_file(path: Path) -> Assessment:
    (scan_slice,) = read_picture(path.read_bytes(), Limits()).slices
    return assess_slice(scan_slice)


def test_a_small_head_is_judged_by_the_brain_it_shows(ct_ich_dir: Path) -> None:
    """Near the top of the skull the head fills less than a fifth of the picture: a slice still showing brain
    (with a subdural bleed) is assessed; the cap above it, mostly bone, is refused as such, not as "no head"."""
    brain = ct_ich_dir / "brain" / "071"
    assert gate_file(brain / "27.jpg") == Assessment(True)
    assert gate_file(brain / "28.jpg") == Assessment(True)
    assert gate_file(brain / "29.jpg") == Assessment(False, LITTLE_BRAIN)


def test_a_neck_below_the_skull_is_refused_for_showing_no_brain(ct_ich_dir: Path) -> None:
    assert gate_file(ct_ich_dir / "brain" / "125" / "01.jpg") == Assessment(False, LITTLE_BRAIN)


def test_a_colour_photo_is_refused() -> None:
    rows, cols = np.mgrid[:300, :400]
    photo = np.stack([rows * 255 / 300, cols * 255 / 400, (rows + cols) % 256], axis=2).astype(np.uint8)
    assessment = gate_picture(Image.fromarray(photo))
    assert not assessment.assessable
    assert "colour" in assessment.reason


def test_a_phone_photo_with_a_colour_cast_still_passes(head_ct_dir: Path) -> None:
    grey = np.asarray(Image.open(head_ct_dir / "images" / "010.png").convert("L"), dtype=np.float32)
    for cast in [(0.85, 0.95, 1.15), (1.1, 1.0, 0.85)]:  # a bluish screen, a warm white balance
        tinted = np.clip(grey[..., None] * np.array(cast) + 10, 0, 255).astype(np.uint8)
        assert gate_picture(Image.fromarray(tinted)).assessable, cast


def test_a_document_is_refused() -> None:
    page = Image.new("L", (600, 800), 250)
    draw = ImageDraw.Draw(page)
    for line in range(30):
        draw.text((40, 40 + 24 * line), "Discharge summary: patient stable, follow-up in two weeks.", fill=20)
    assessment = gate_picture(page)
    assert not assessment.assessable
    assert "light background" in assessment.reason


@pytest.mark.parametrize("level", [0, 128, 255])
def test_a_blank_picture_is_refused(level: int) -> None:
    assessment = gate_picture(Image.new("L", (256, 256), level))
    assert not assessment.assessable
    assert "blank" in assessment.reason


def test_a_small_blob_on_black_is_not_a_head() -> None:
    image = Image.new("L", (400, 400))
    ImageDraw.Draw(image).ellipse((180, 180, 220, 220), fill=200)
    assert gate_picture(image) == Assessment(False, "No head can be seen in the picture.")


def test_a_small_grey_disc_without_a_skull_is_not_assessable() -> None:
    image = Image.new("L", (400, 400))
    ImageDraw.Draw(image).ellipse((130, 130, 270, 270), fill=120)  # head-sized, a tenth of the picture
    assert gate_picture(image) == Assessment(False, LITTLE_BRAIN)


def _head(size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.mgrid[:size, :size]
    return np.hypot(rows - size / 2, cols - size / 2), np.full((size, size), -1000.0)


def test_brain_inside_the_skull_is_assessable_and_bone_is_not() -> None:
    radius, hu = _head()
    hu[radius < 95] = 40.0
    hu[radius < 90] = 1200.0
    brain = hu.copy()
    brain[radius < 84] = 35.0
    vertex = hu.copy()
    vertex[radius < 30] = 35.0  # a cap of bone with a little brain under it
    assert assess_hu(brain, spacing_mm=1.0).assessable
    assert not assess_hu(vertex, spacing_mm=1.0).assessable
    assert not assess_hu(np.full((256, 256), -1000.0), spacing_mm=1.0).assessable


def test_soft_tissue_outside_a_skull_is_not_brain() -> None:
    radius, hu = _head()
    hu[radius < 95] = 40.0  # a neck: soft tissue with no skull around it
    hu[(radius > 20) & (radius < 26)] = 700.0  # a vertebra
    assert not assess_hu(hu, spacing_mm=1.0).assessable

