"""Invariants of the shared preprocessing: what training and serving both feed the model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from inference.preprocess import (
    INPUT_SIZE,
    PreparedSlice,
    grey_from_image,
    head_box,
    prepare_batch,
    prepare_slice,
    window_hu,
)


def _phantom(height: int = 300, width: int = 400, skull: int = 250) -> np.ndarray:
    """A skull ring around mid-grey brain with a bright spot, off-centre on black, with a label top left."""
    image = Image.new("L", (width, height))
    draw = ImageDraw.Draw(image)
    draw.ellipse((150, 60, 350, 280), fill=skull)
    draw.ellipse((162, 72, 338, 268), fill=120)
    draw.ellipse((260, 120, 300, 170), fill=250)  # centred on row 145, column 280
    draw.text((5, 5), "A", fill=255)
    return np.asarray(image, dtype=np.float32) / 255.0


def test_prepared_slice_has_the_model_shape_dtype_and_range() -> None:
    prepared = prepare_slice(_phantom())
    assert isinstance(prepared, PreparedSlice)
    assert prepared.tensor.shape == (3, INPUT_SIZE, INPUT_SIZE)
    assert prepared.tensor.dtype == np.float32
    assert prepared.tensor.min() >= -1.0 and prepared.tensor.max() <= 1.0
    assert np.array_equal(prepared.tensor[0], prepared.tensor[2])


def test_head_box_ignores_the_label_and_black_border() -> None:
    top, left, bottom, right = head_box(_phantom())
    assert abs(top - 60) <= 4 and abs(left - 150) <= 4
    assert abs(bottom - 281) <= 4 and abs(right - 351) <= 4


def test_box_maps_the_tensor_back_to_source_pixels() -> None:
    prepared = prepare_slice(_phantom(skull=150))
    top, left, side = prepared.box
    assert side >= 220  # the whole head, which is 221 pixels tall
    # The bright spot's centre in the tensor, carried back through the box, lands on its centre in the source.
    rows, cols = np.nonzero(prepared.tensor[0] > 0.8)
    row = top + (rows.mean() + 0.5) * side / INPUT_SIZE
    col = left + (cols.mean() + 0.5) * side / INPUT_SIZE
    assert abs(row - 145) < 8 and abs(col - 280) < 8


def test_box_reaches_outside_the_image_where_padded() -> None:
    grey = np.zeros((100, 300), dtype=np.float32)
    grey[10:90, 20:280] = 0.6  # wider than tall: the square pads above and below
    top, left, side = prepare_slice(grey).box
    assert top < 0 and top + side > 100
    assert side >= 260


def test_rgb_rgba_and_palette_give_the_grey_of_l() -> None:
    grey_image = Image.fromarray((_phantom() * 255).round().astype(np.uint8), mode="L")
    expected = grey_from_image(grey_image)
    rgba = grey_image.convert("RGBA")
    for variant in (grey_image.convert("RGB"), rgba, grey_image.convert("P"), grey_image.convert("LA")):
        np.testing.assert_allclose(grey_from_image(variant), expected, atol=1 / 255)


def test_transparent_pixels_count_as_black() -> None:
    rgba = Image.new("RGBA", (20, 20), (255, 255, 255, 0))
    rgba.paste((200, 200, 200, 255), (5, 5, 15, 15))
    grey = grey_from_image(rgba)
    assert grey[0, 0] == 0.0
    assert grey[10, 10] == pytest.approx(200 / 255)


def test_sixteen_bit_and_float_images_are_stretched_to_unit_range() -> None:
    values = np.linspace(1000, 3000, 64 * 32).reshape(64, 32).astype(np.uint16)
    for image in (Image.fromarray(values), Image.fromarray(values.astype(np.float32))):
        grey = grey_from_image(image)
        assert grey.dtype == np.float32 and grey.shape == (64, 32)
        assert grey.min() == 0.0 and grey.max() == 1.0


def test_cmyk_is_read_as_grey() -> None:
    grey = grey_from_image(Image.new("RGB", (8, 8), (128, 128, 128)).convert("CMYK"))
    assert grey.shape == (8, 8) and 0.3 < grey.mean() < 0.7


def test_exif_orientation_is_honoured(tmp_path: Path) -> None:
    upright = Image.new("L", (40, 20))
    upright.paste(255, (0, 0, 10, 20))  # white band on the left of a landscape picture
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # as a camera would store it, portrait
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "photo.jpg"
    stored.save(path, exif=exif, quality=95)
    grey = grey_from_image(Image.open(path))
    assert grey.shape == (20, 40)
    assert grey[:, :8].mean() > 0.9 and grey[:, 12:].mean() < 0.1


def test_window_maps_its_edges_to_zero_and_one() -> None:
    hu = np.array([-1000, 0, 40, 80, 3000], dtype=np.int16)
    np.testing.assert_allclose(window_hu(hu), [0.0, 0.0, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(window_hu(np.array([10.0, 110.0]), center=60, width=100), [0.0, 1.0])
    assert window_hu(hu).dtype == np.float32


def test_batch_stacks_slices_in_order() -> None:
    first, second = _phantom(), _phantom(200, 200)
    batch, prepared = prepare_batch([first, second])
    assert batch.shape == (2, 3, INPUT_SIZE, INPUT_SIZE) and batch.dtype == np.float32
    np.testing.assert_array_equal(batch[1], prepare_slice(second).tensor)
    assert [item.box for item in prepared] == [prepare_slice(first).box, prepare_slice(second).box]


def test_blank_slice_keeps_the_whole_image() -> None:
    prepared = prepare_slice(np.zeros((50, 80), dtype=np.float32))
    top, left, side = prepared.box
    assert top <= -15 and left <= 0 and top + side >= 65 and left + side >= 80
    assert np.all(prepared.tensor == -1.0)


def test_reference_slices_keep_their_head(head_ct_dir: Path) -> None:
    for path in sorted((head_ct_dir / "images").glob("*.png"))[:20]:
        grey = grey_from_image(Image.open(path))
        top, left, bottom, right = head_box(grey)
        # The head fills most of these figure panels; the box never collapses onto a label.
        assert (bottom - top) > 0.6 * grey.shape[0] and (right - left) > 0.6 * grey.shape[1], path.name
