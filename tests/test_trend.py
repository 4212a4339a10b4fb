"""The trend picture: a PNG readable on a phone, over the time the readings cover, with each vital in its own
panel, its normal band shaded and gaps left open."""

from __future__ import annotations

import io
import math
from datetime import timezone

import numpy as np
import pytest
from PIL import Image

from bot.trend import (
    DIASTOLIC,
    HEART_RATE,
    HEIGHT,
    MUTED,
    NORMAL_BAND,
    PANEL_GAP,
    SPO2,
    SYSTOLIC,
    TITLE_HEIGHT,
    TOP,
    WIDTH,
    render_trend,
    span_words,
    trend_span,
)

NOW = 1_790_000_000.0  # 14:13 UTC
HOUR = 3600.0
SIX_HOURS = 6 * HOUR
PHONE_CHAT_WIDTH = 260  # px a phone's chat shows a picture across


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
    """Where `colour` is drawn in the plots (the panel titles, which show each line's latest value in its
    colour, left out)."""
    found = np.all(picture == colour, axis=-1)
    panel_height = (HEIGHT - TOP - 2 * PANEL_GAP) // 3
    for panel in range(3):
        title_top = TOP + panel * (panel_height + PANEL_GAP)
        found[title_top:title_top + TITLE_HEIGHT] = False
    return np.nonzero(found)


def test_each_vital_is_drawn_in_its_own_panel() -> None:
    picture = pixels(render_trend(vitals(6, 0, hr=80, spo2=95, sbp=130, dbp=75), NOW, SIX_HOURS, tz=timezone.utc))
    third = HEIGHT / 3
    for colour, panel in ((HEART_RATE, 0), (SPO2, 1), (SYSTOLIC, 2), (DIASTOLIC, 2)):
        ys, xs = rows_and_columns(picture, colour)
        assert ys.size > 1000, colour
        assert np.all((ys > panel * third) & (ys < (panel + 1) * third)), colour
        assert xs.max() - xs.min() > WIDTH * 0.7, colour  # the line spans the six hours


def test_higher_values_are_drawn_higher() -> None:
    low = pixels(render_trend(vitals(1, 0, hr=60), NOW, SIX_HOURS, tz=timezone.utc))
    high = pixels(render_trend(vitals(1, 0, hr=120), NOW, SIX_HOURS, tz=timezone.utc))
    assert rows_and_columns(high, HEART_RATE)[0].mean() < rows_and_columns(low, HEART_RATE)[0].mean() - 50


def test_a_silent_sensor_leaves_a_gap() -> None:
    samples = vitals(6, 4, hr=80) + vitals(2, 0, hr=80)
    _, xs = rows_and_columns(pixels(render_trend(samples, NOW, SIX_HOURS, tz=timezone.utc)), HEART_RATE)
    columns = np.unique(xs)
    widest_gap = np.diff(columns).max()
    assert widest_gap > WIDTH * 0.25  # two of six hours without a line


def test_a_cuff_read_every_quarter_hour_still_draws_a_line() -> None:
    samples = vitals(6, 0, every=900, sbp=130, dbp=80)
    _, xs = rows_and_columns(pixels(render_trend(samples, NOW, SIX_HOURS, tz=timezone.utc)), SYSTOLIC)
    assert np.diff(np.unique(xs[xs > 200])).max() < 10


def test_readings_outside_the_window_or_missing_are_left_out() -> None:
    samples = vitals(9, 7, hr=80) + vitals(6, 0, spo2=94)
    picture = pixels(render_trend(samples, NOW, SIX_HOURS, tz=timezone.utc))
    ys, xs = rows_and_columns(picture, HEART_RATE)
    assert xs.size == 0
    assert rows_and_columns(picture, SPO2)[0].size > 1000


def test_values_beyond_the_usual_range_stay_inside_the_panel() -> None:
    picture = pixels(render_trend(vitals(3, 0, hr=210), NOW, SIX_HOURS, tz=timezone.utc))
    ys, _ = rows_and_columns(picture, HEART_RATE)
    assert ys.size > 1000 and ys.max() < HEIGHT / 3


@pytest.mark.parametrize(("hours", "span", "words"), [
    (0.02, 300, "5 minutes"), (0.1, 600, "10 minutes"), (0.9, 3600, "hour"), (2.5, 3 * HOUR, "3 hours"),
    (9, SIX_HOURS, "6 hours"),
])
def test_the_span_is_the_shortest_that_holds_the_readings_of_the_last_six_hours(
    hours: float, span: float, words: str
) -> None:
    samples = vitals(hours, 0, hr=80)
    assert (trend_span(samples, NOW), span_words(span)) == (span, words)


def test_minutes_of_readings_fill_the_picture() -> None:
    samples = vitals(4 / 60, 0, every=1.0, hr=80)  # four minutes
    picture = pixels(render_trend(samples, NOW, trend_span(samples, NOW), tz=timezone.utc))
    _, xs = rows_and_columns(picture, HEART_RATE)
    assert xs.max() - xs.min() > WIDTH * 0.6


def test_every_panel_shades_its_normal_band() -> None:
    picture = pixels(render_trend(vitals(1, 0, hr=80, spo2=97, sbp=130, dbp=80), NOW, HOUR, tz=timezone.utc))
    ys, _ = rows_and_columns(picture, NORMAL_BAND)
    assert [int(np.sum((ys > panel * HEIGHT / 3) & (ys < (panel + 1) * HEIGHT / 3))) > 10_000 for panel in range(3)] == [
        True, True, True
    ]


def test_time_labels_stay_readable_in_a_phone_s_chat() -> None:
    assert 0.8 <= WIDTH / HEIGHT <= 1.25  # a chat fits a picture in a box: a tall one is shown narrow
    picture = pixels(render_trend(vitals(1, 0, hr=80), NOW, HOUR, tz=timezone.utc))
    grey = np.all(picture == MUTED, axis=-1)
    lines = np.nonzero(grey.sum(axis=1) > WIDTH / 2)[0]  # the frames' top and bottom edges
    below_first_plot = grey[lines[lines < HEIGHT / 3].max() + 1:, WIDTH // 3:]  # time labels, not value labels
    label_rows = np.nonzero(below_first_plot[:100].any(axis=1))[0]
    digit_height = label_rows.max() - label_rows.min() + 1
    assert digit_height * PHONE_CHAT_WIDTH / WIDTH >= 7  # px: the digits of a 10 px font
