"""The heat-map picture on real slices: colour only inside the skull, smooth, and a caption band that says what was
found, also when nothing was."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from core.settings import DEFAULT_MODEL, Settings
from hemowatch.builders import analyzer_from_settings
from inference.dicom import read_series
from inference.images import read_picture
from inference.limits import Limits
from inference.model import ModelCard
from inference.overlay import (
    MAX_SIDE,
    OverlayCaption,
    heat_alpha,
    intracranial_mask,
    region_stands_out,
    render_overlay,
)
from inference.preprocess import prepare_slice
from inference.scan import Window

BRAIN_WINDOW = Window(40.0, 80.0)  # a usual brain window for the pictures these tests draw on
CT_ICH_BLEED = Path("brain") / "049" / "15.jpg"  # epidural haemorrhage and a fracture, inside the CT-ICH folder
# Evidence strongest in the outer ring of cells, where the box holds scalp, skull and air: the case that used to
# paint blocks of colour outside the head.
RIM_CAM = np.array(
    [[9, 9, 9, 9, 9], [9, 2, 1, 2, 9], [9, 1, -3, 1, 9], [9, 2, 1, 2, 9], [9, 9, 9, 9, 9]], dtype=np.float32
)
FLAGGED = OverlayCaption(flagged=True, probability=0.83, threshold=0.6, slice_number=14, slice_count=28)
NOT_FLAGGED = OverlayCaption(flagged=False, probability=0.12, threshold=0.6, slice_number=14, slice_count=28)
BONE = 0.95


@pytest.fixture(scope="module")
def ge_grey(ge_series_dir: Path) -> np.ndarray:
    """Slice 14 of the GE series (mid-brain level, the skull a closed ring) in the brain window."""
    (series,) = read_series([path.read_bytes() for path in ge_series_dir.glob("*.dcm")], Limits(), strict=False)
    return series.slices[13].grey(BRAIN_WINDOW)


@pytest.fixture(scope="module")
def bleed_grey(ct_ich_dir: Path) -> np.ndarray:
    return read_picture((ct_ich_dir / CT_ICH_BLEED).read_bytes(), Limits()).slices[0].grey(BRAIN_WINDOW)


def picture_parts(png: bytes, grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(image part, caption band) of a rendered overlay as RGB arrays; `grey` is at most MAX_SIDE, so unscaled."""
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.mode == "RGB"
    pixels = np.asarray(image, dtype=np.int16)
    assert pixels.shape[1] == grey.shape[1]
    return pixels[: grey.shape[0]], pixels[grey.shape[0] :]


def coloured(part: np.ndarray, grey: np.ndarray) -> np.ndarray:
    """Pixels where the picture is not the grey slice itself."""
    base = np.round(grey * 255).astype(np.int16)
    return (np.abs(part - base[..., None]) > 1).any(axis=2)


def chroma(part: np.ndarray) -> np.ndarray:
    """How coloured each pixel is: zero on the grey slice, opacity times the colour's saturation under the map."""
    return part.max(axis=2) - part.min(axis=2)


@pytest.mark.parametrize("slice_name", ["ge_grey", "bleed_grey"])
def test_colour_stays_inside_the_skull(slice_name: str, request: pytest.FixtureRequest) -> None:
    grey = request.getfixturevalue(slice_name)
    png = render_overlay(grey, RIM_CAM, prepare_slice(grey).box, FLAGGED)
    part, _ = picture_parts(png, grey)
    colour = coloured(part, grey)
    assert colour.sum() > 0.05 * grey.size, "the evidence inside the head is shown"
    assert not (colour & ~intracranial_mask(grey)).any()
    # Checked without the module's mask as well: never on or next to the skull, never near the outside of the head.
    parts, _ = ndimage.label(grey >= BONE)
    skull = parts == np.argmax(np.bincount(parts.ravel())[1:]) + 1
    assert not (colour & ndimage.binary_dilation(skull, iterations=2)).any()
    head = ndimage.binary_fill_holes(grey > 0.08)
    assert not (colour & ~ndimage.binary_erosion(head, iterations=12)).any()
    if slice_name == "ge_grey":  # a slice above the skull base: the skull is a closed ring
        assert not (colour & ~ndimage.binary_fill_holes(skull)).any()


def test_a_haematoma_as_bright_as_bone_inside_the_brain_is_coloured(head_ct_dir: Path) -> None:
    # A publication picture whose fresh haematoma is speckled as white as bone: inside the brain it is not skull.
    grey = read_picture((head_ct_dir / "images" / "000.png").read_bytes(), Limits()).slices[0].grey(BRAIN_WINDOW)
    bright = grey >= BONE
    parts, _ = ndimage.label(bright)
    skull = parts == np.argmax(np.bincount(parts.ravel())[1:]) + 1
    inside = bright & ~ndimage.binary_dilation(skull, iterations=12) & ndimage.binary_fill_holes(skull)
    assert inside.sum() > 200, "the picture's haematoma has bone-white pixels"
    assert intracranial_mask(grey)[inside].mean() > 0.95
    cam = np.zeros((5, 5), dtype=np.float32)
    cam[1:3, 2:4] = 10.0  # evidence over the haematoma (front left of the picture)
    assert (heat_alpha(grey, cam, prepare_slice(grey).box, flagged=True)[inside] > 0).mean() > 0.9


@pytest.mark.parametrize("slice_name", ["ge_grey", "bleed_grey"])
def test_heat_map_is_smooth(slice_name: str, request: pytest.FixtureRequest) -> None:
    grey = request.getfixturevalue(slice_name)
    cam = np.zeros((5, 5), dtype=np.float32)
    cam[1:3, 2:4] = [[4, 10], [6, 3]]  # cells of evidence beside cells of none,
    cam[3:, 3:] = [[5, 8], [7, 9]]  # and reaching the box's edge: hard-edged blocks when pasted crudely
    part, _ = picture_parts(render_overlay(grey, cam, prepare_slice(grey).box, FLAGGED), grey)
    level = chroma(part)
    assert level.max() > 80, "the strongest evidence is clearly coloured"
    steps = max(np.abs(np.diff(level, axis=0)).max(), np.abs(np.diff(level, axis=1)).max())
    assert steps <= 32, f"the colour jumps by {steps} of 255 between neighbouring pixels"


def test_a_slice_without_positive_evidence_stays_grey_and_a_flagged_one_says_so(ge_grey: np.ndarray) -> None:
    box = prepare_slice(ge_grey).box
    part, band = picture_parts(render_overlay(ge_grey, -np.abs(RIM_CAM) - 1, box, FLAGGED), ge_grey)
    assert not coloured(part, ge_grey).any()
    _, focal_band = picture_parts(render_overlay(ge_grey, RIM_CAM, box, FLAGGED), ge_grey)
    assert band.shape[0] > focal_band.shape[0], "one more caption line: no single region stands out"
    assert FLAGGED.lines(focal=False)[3] == "No single region stands out on this slice"
    assert NOT_FLAGGED.lines(focal=False) == NOT_FLAGGED.lines()


def test_a_region_stands_out_when_its_evidence_is_half_the_strongest_either_way() -> None:
    cam = np.zeros((5, 5), dtype=np.float32)
    cam[2, 2] = 2.0
    cam[0, 0] = -3.9
    assert region_stands_out(cam)
    cam[0, 0] = -4.1  # the evidence against elsewhere is more than twice as strong
    assert not region_stands_out(cam)
    faint = np.zeros((5, 5), dtype=np.float32)
    faint[2, 2] = 0.9  # the strongest cell, but too little evidence to point at
    assert not region_stands_out(faint)
    assert region_stands_out(RIM_CAM) and not region_stands_out(-np.abs(RIM_CAM))


def test_a_faint_tint_is_not_shown_as_a_region(ge_grey: np.ndarray) -> None:
    cam = -np.abs(RIM_CAM)
    cam[2, 2] = 3.0  # positive evidence a third of the strongest against: a tint of about a tenth, before
    box = prepare_slice(ge_grey).box
    assert heat_alpha(ge_grey, cam, box, flagged=True).max() > 0
    part, band = picture_parts(render_overlay(ge_grey, cam, box, FLAGGED), ge_grey)
    assert not coloured(part, ge_grey).any()
    _, grey_band = picture_parts(render_overlay(ge_grey, -np.abs(RIM_CAM), box, FLAGGED), ge_grey)
    assert band.shape == grey_band.shape, "the caption says no single region stands out, as on a grey slice"


def test_the_ge_series_is_flagged_with_no_region_standing_out_and_its_picture_stays_grey(
    ge_series_dir: Path,
) -> None:
    if not DEFAULT_MODEL.is_file():
        pytest.skip(f"the model is not at {DEFAULT_MODEL} (python -m training builds it)")
    (result,) = analyzer_from_settings(Settings(inference_threads=2)).analyze_path(ge_series_dir)
    assert result.verdict == "hemorrhage" and result.heatmap_shows_region is False
    (series,) = read_series([path.read_bytes() for path in ge_series_dir.glob("*.dcm")], Limits(), strict=False)
    grey = series.slices[result.top_slice[0] - 1].grey(ModelCard.beside(DEFAULT_MODEL).window)
    part, _ = picture_parts(result.overlay_png, grey)
    assert not coloured(part, grey).any()


def test_caption_band_says_whether_haemorrhage_is_suspected(bleed_grey: np.ndarray) -> None:
    box = prepare_slice(bleed_grey).box
    flagged_part, flagged_band = picture_parts(render_overlay(bleed_grey, RIM_CAM, box, FLAGGED), bleed_grey)
    quiet_part, quiet_band = picture_parts(render_overlay(bleed_grey, RIM_CAM, box, NOT_FLAGGED), bleed_grey)
    for band in (flagged_band, quiet_band):
        assert band.shape[0] >= 0.2 * bleed_grey.shape[0], "a band tall enough for a phone-readable caption"
        text = band.max(axis=2) > 120
        assert 0.02 < text.mean() < 0.4, "the band carries letters on a dark ground"
    assert flagged_band.shape != quiet_band.shape or (flagged_band != quiet_band).any()
    assert chroma(quiet_part).max() < chroma(flagged_part).max(), "a study not flagged is coloured faintly at most"


def test_caption_lines() -> None:
    assert FLAGGED.lines() == [
        "Haemorrhage suspected",
        "Probability 83% (threshold 60%)",
        "Heat-map on slice 14 of 28",
        "Decision support, not a diagnosis.",
    ]
    single = OverlayCaption(False, 0.001, 0.6, 1, 1, suspected_type="epidural")
    assert single.lines() == [
        "No haemorrhage suspected",
        "Probability under 1% (threshold 60%)",
        "Suspected type: epidural",
        "Decision support, not a diagnosis.",
    ]


def test_large_pictures_are_reduced_and_small_ones_enlarged(bleed_grey: np.ndarray) -> None:
    for side in (1400, 200):
        grey = np.asarray(Image.fromarray(bleed_grey).resize((side, side), Image.Resampling.BILINEAR))
        image = Image.open(io.BytesIO(render_overlay(grey, RIM_CAM, prepare_slice(grey).box, FLAGGED)))
        assert 480 <= image.width <= MAX_SIDE and image.height > image.width


def test_every_assessable_study_gets_a_captioned_picture(ge_series_dir: Path) -> None:
    if not DEFAULT_MODEL.is_file():
        pytest.skip(f"the model is not at {DEFAULT_MODEL} (python -m training builds it)")
    bands = {}
    for threshold in (0.0, 1.0):  # flagged and not flagged, on the same real series and the model's own map
        analyzer = analyzer_from_settings(Settings(inference_threads=2), threshold=threshold)
        (result,) = analyzer.analyze_path(ge_series_dir)
        assert result.verdict == ("hemorrhage" if threshold == 0.0 else "no_hemorrhage")
        (series,) = read_series([path.read_bytes() for path in ge_series_dir.glob("*.dcm")], Limits(), strict=False)
        grey = series.slices[result.top_slice[0] - 1].grey(ModelCard.beside(DEFAULT_MODEL).window)
        part, bands[threshold] = picture_parts(result.overlay_png, grey)
        assert not (coloured(part, grey) & ~intracranial_mask(grey)).any()
    assert bands[0.0].shape != bands[1.0].shape or (bands[0.0] != bands[1.0]).any()
