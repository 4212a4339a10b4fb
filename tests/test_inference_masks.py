"""The fast binary morphology gives scipy.ndimage's masks pixel for pixel, edges and borders included."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from inference.masks import dilated, eroded, filled
from inference.preprocess import _opened


def random_masks(count: int = 200) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [
        rng.random((int(rng.integers(1, 48)), int(rng.integers(1, 48)))) < rng.uniform(0.2, 0.9)
        for _ in range(count)
    ]


def test_filled_is_binary_fill_holes() -> None:
    for mask in random_masks():
        np.testing.assert_array_equal(filled(mask), ndimage.binary_fill_holes(mask))


@pytest.mark.parametrize("border", [False, True])
@pytest.mark.parametrize("iterations", [1, 3, 7])
def test_eroded_and_dilated_are_scipys_with_the_cross(iterations: int, border: bool) -> None:
    for mask in random_masks(60):
        np.testing.assert_array_equal(
            eroded(mask, iterations, border), ndimage.binary_erosion(mask, iterations=iterations, border_value=border)
        )
        np.testing.assert_array_equal(
            dilated(mask, iterations, border), ndimage.binary_dilation(mask, iterations=iterations, border_value=border)
        )


def test_opening_is_scipys_square_opening_with_nearest_edges() -> None:
    for mask in random_masks():
        expected = mask.astype(np.uint8)
        for filter1d in (ndimage.minimum_filter1d, ndimage.maximum_filter1d):
            expected = filter1d(filter1d(expected, 3, axis=0, mode="nearest"), 3, axis=1, mode="nearest")
        np.testing.assert_array_equal(_opened(mask), expected > 0)
