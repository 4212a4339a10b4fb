"""The trend picture: a readable PNG with each vital in its own panel and gaps left open."""

from __future__ import annotations

import io
import math
from datetime import timezone

import numpy as np
from PIL import Image

from bot.trend import DIASTOLIC, HEART_RATE, HEIGHT, SPO2, SYSTOLIC, WIDTH, render_trend

NOW = 1_790_000_000.0  # 14:13 UTC
HOUR = 3600.0


def vitals(start: float, end: float, every: float = 10.0, **columns: float | None) -> list[dict]:
    """Readings every `every` seconds between `start` and `end` hours before NOW, gently varying."""
    rows = []
    ts = NOW - start * HOUR
    while ts <= NOW - end * HOUR:
        wave = math.sin(ts / 2000)
        rows.append({"ts": ts, **{k: None if v is None else v + 5 * wave for k, v in columns.items()}})
        ts += every
    return rows


def pixels(png: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.mode == "RGB" and image.size == (WIDTH, HEIGHT)
    return np.asarray(image)


def rows_and_columns(picture: np.ndarray, colour: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    return np.nonzero(np.all(picture == colour, axis=-1))


def test_each_vital_is_drawn_in_its_own_panel() -> None:
    picture = pixels(render_trend(vitals(6, 0, hr=80, spo2=95, sbp=130, dbp=75), NOW, tz=timezone.utc))
    third = HEIGHT / 3
    for colour, panel in ((HEART_RATE, 0), (SPO2, 1), (SYSTOLIC, 2), (DIASTOLIC, 2)):
        ys, xs = rows_and_columns(picture, colour)
        plotted = ys[xs < WIDTH * 0.6]  # leave out the colour key beside the panel title
        assert plotted.size > 1000, colour
        assert np.all((plotted > panel * third) & (plotted < (panel + 1) * third)), colour
        assert xs.max() - xs.min() > WIDTH * 0.7, colour  # the line spans the six hours


def test_higher_values_are_drawn_higher() -> None:
    low = pixels(render_trend(vitals(1, 0, hr=60), NOW, tz=timezone.utc))
    high = pixels(render_trend(vitals(1, 0, hr=120), NOW, tz=timezone.utc))
    assert rows_and_columns(high, HEART_RATE)[0].mean() < rows_and_columns(low, HEART_RATE)[0].mean() - 50


def test_a_silent_sensor_leaves_a_gap() -> None:
    samples = vitals(6, 4, hr=80) + vitals(2, 0, hr=80)
    _, xs = rows_and_columns(pixels(render_trend(samples, NOW, tz=timezone.utc)), HEART_RATE)
    columns = np.unique(xs)
    widest_gap = np.diff(columns).max()
    assert widest_gap > WIDTH * 0.25  # two of six hours without a line


def test_a_cuff_read_every_quarter_hour_still_draws_a_line() -> None:
    samples = vitals(6, 0, every=900, sbp=130, dbp=80)
    _, xs = rows_and_columns(pixels(render_trend(samples, NOW, tz=timezone.utc)), SYSTOLIC)
    assert np.diff(np.unique(xs[xs > 200])).max() < 10


def test_readings_outside_the_window_or_missing_are_left_out() -> None:
    samples = vitals(9, 7, hr=80) + vitals(6, 0, spo2=94)
    picture = pixels(render_trend(samples, NOW, tz=timezone.utc))
    ys, xs = rows_and_columns(picture, HEART_RATE)
    assert xs.size == 0
    assert rows_and_columns(picture, SPO2)[0].size > 1000


def test_values_beyond_the_usual_range_stay_inside_the_panel() -> None:
    picture = pixels(render_trend(vitals(3, 0, hr=210), NOW, tz=timezone.utc))
    ys, _ = rows_and_columns(picture, HEART_RATE)
    assert ys.size > 1000 and ys.max() < HEIGHT / 3
