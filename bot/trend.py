"""The `/status` trend picture: heart rate, SpO2 and blood pressure over the last hours, as a PNG.

Drawn with Pillow at a size that stays readable on a phone. Samples are vitals rows (`ts` in epoch
seconds and the columns `hr`, `spo2`, `sbp`, `dbp`, any of them None). A line breaks wherever readings
stop for a while, so a sensor that was off never looks like a flat trace.
"""

from __future__ import annotations

import functools
import io
import itertools
import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from core.vitals import VITALS

WIDTH, HEIGHT = 1080, 1440
LEFT, RIGHT, TOP = 120, 40, 90  # margins around the plots, in pixels
PANEL_GAP = 40
TITLE_HEIGHT = 60  # panel title above each plot
AXIS_HEIGHT = 50  # time labels under each plot
LINE_WIDTH = 5

BACKGROUND = (255, 255, 255)
INK = (33, 33, 33)
MUTED = (110, 110, 110)
GRID = (225, 225, 225)
NORMAL_BAND = (230, 244, 234)
HEART_RATE = (211, 47, 47)
SPO2 = (25, 118, 210)
SYSTOLIC = (123, 31, 162)
DIASTOLIC = (239, 108, 0)


@dataclass(frozen=True, slots=True)
class Trace:
    column: str
    label: str
    colour: tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class Panel:
    title: str
    unit: str  # as written after the reading, see `core.vitals.Vital.after_number`
    traces: tuple[Trace, ...]
    low: float  # the value axis always shows at least low..high
    high: float
    normal: tuple[float, float] | None  # NEWS2 zero-score band, shaded


PANELS = (
    Panel(VITALS["hr"].label, VITALS["hr"].after_number, (Trace("hr", "", HEART_RATE),), 40, 140, (51, 90)),
    Panel(VITALS["spo2"].label, VITALS["spo2"].after_number, (Trace("spo2", "", SPO2),), 85, 100, (96, 100)),
    Panel(
        "Blood pressure", VITALS["sbp"].after_number,
        (Trace("sbp", "systolic", SYSTOLIC), Trace("dbp", "diastolic", DIASTOLIC)), 40, 180, None,
    ),
)

Point = tuple[float, float]


def render_trend(
    samples: Iterable[Mapping[str, Any]],
    now: float,
    hours: float = 6.0,
    gap_s: float = 300.0,
    tz: tzinfo | None = None,
) -> bytes:
    """A PNG of the vitals in `samples` over the `hours` before `now` (epoch seconds), times shown in `tz`."""
    start = now - hours * 3600
    rows = sorted((row for row in samples if start <= row["ts"] <= now), key=lambda row: row["ts"])
    image = Image.new("RGB", (WIDTH, HEIGHT), BACKGROUND)
    draw = ImageDraw.Draw(image)
    zone = datetime.fromtimestamp(now, tz).astimezone(tz).tzname()
    draw.text((LEFT, 24), f"Last {hours:g} hours, up to {_clock(now, tz)} {zone}", font=_font(38), fill=INK)
    panel_height = (HEIGHT - TOP - PANEL_GAP * (len(PANELS) - 1)) // len(PANELS)
    for number, panel in enumerate(PANELS):
        top = TOP + number * (panel_height + PANEL_GAP)
        _draw_panel(draw, panel, rows, (top, top + panel_height), (start, now), gap_s, tz)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _draw_panel(
    draw: ImageDraw.ImageDraw,
    panel: Panel,
    rows: list[Mapping[str, Any]],
    span: tuple[int, int],
    window: tuple[float, float],
    gap_s: float,
    tz: tzinfo | None,
) -> None:
    plot = (LEFT, span[0] + TITLE_HEIGHT, WIDTH - RIGHT, span[1] - AXIS_HEIGHT)
    runs = {trace: _runs(rows, trace.column, gap_s) for trace in panel.traces}
    values = [value for trace_runs in runs.values() for run in trace_runs for _, value in run]
    low = min([panel.low, *values])
    high = max([panel.high, *values])
    step = _tick_step(high - low)
    low, high = math.floor(low / step) * step, math.ceil(high / step) * step

    def x_of(ts: float) -> float:
        return plot[0] + (ts - window[0]) / (window[1] - window[0]) * (plot[2] - plot[0])

    def y_of(value: float) -> float:
        return plot[3] - (value - low) / (high - low) * (plot[3] - plot[1])

    _draw_title(draw, panel, rows, span[0])
    if panel.normal is not None:
        draw.rectangle((plot[0], y_of(min(panel.normal[1], high)), plot[2], y_of(max(panel.normal[0], low))), fill=NORMAL_BAND)
    small = _font(28)
    for value in _frange(low, high, step):
        y = y_of(value)
        draw.line((plot[0], y, plot[2], y), fill=GRID, width=2)
        draw.text((plot[0] - 14, y), f"{value:g}", font=small, fill=MUTED, anchor="rm")
    for tick in _hour_ticks(window, tz):
        x = x_of(tick)
        draw.line((x, plot[1], x, plot[3]), fill=GRID, width=2)
        draw.text((x, plot[3] + 10), _clock(tick, tz), font=small, fill=MUTED, anchor="mt")
    draw.rectangle(plot, outline=MUTED, width=2)
    if not values:
        draw.text(((plot[0] + plot[2]) / 2, (plot[1] + plot[3]) / 2), "no readings", font=_font(34), fill=MUTED, anchor="mm")
    for trace, trace_runs in runs.items():
        for run in trace_runs:
            points = [(x_of(ts), y_of(value)) for ts, value in run]
            if len(points) == 1:
                (x, y), r = points[0], LINE_WIDTH
                draw.ellipse((x - r, y - r, x + r, y + r), fill=trace.colour)
            else:
                draw.line(points, fill=trace.colour, width=LINE_WIDTH, joint="curve")


def _draw_title(draw: ImageDraw.ImageDraw, panel: Panel, rows: list[Mapping[str, Any]], top: int) -> None:
    """Panel name with the latest reading, and a colour key when the panel has several lines."""
    latest = [_latest(rows, trace.column) for trace in panel.traces]
    reading = "/".join("--" if value is None else f"{value:.0f}" for value in latest)
    font = _font(36)
    draw.text((LEFT, top + 8), f"{panel.title}  {reading}{panel.unit}", font=font, fill=INK)
    x = WIDTH - RIGHT
    for trace in reversed([trace for trace in panel.traces if trace.label]):
        x -= draw.textlength(trace.label, font=_font(28))
        draw.text((x, top + 14), trace.label, font=_font(28), fill=trace.colour)
        x -= 60
        draw.line((x, top + 30, x + 44, top + 30), fill=trace.colour, width=LINE_WIDTH)
        x -= 24


def _runs(rows: list[Mapping[str, Any]], column: str, gap_s: float) -> list[list[Point]]:
    """The readings of one vital split into unbroken runs.

    A run breaks where the readings pause for longer than `gap_s` or three of their usual intervals,
    whichever is longer, so a blood pressure cuff read every 15 minutes still draws a line.
    """
    readings = [(row["ts"], float(row[column])) for row in rows if row.get(column) is not None]
    intervals = [b[0] - a[0] for a, b in itertools.pairwise(readings)]
    longest_pause = max(gap_s, 3 * statistics.median(intervals)) if intervals else gap_s
    runs: list[list[Point]] = []
    for previous, reading in zip([None, *readings], readings):
        if previous is None or reading[0] - previous[0] > longest_pause:
            runs.append([])
        runs[-1].append(reading)
    return runs


def _latest(rows: list[Mapping[str, Any]], column: str) -> float | None:
    return next((row[column] for row in reversed(rows) if row.get(column) is not None), None)


def _tick_step(extent: float) -> float:
    """A round step giving at most six value ticks."""
    return next(step for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 500) if extent / step <= 6)


def _frange(low: float, high: float, step: float) -> list[float]:
    return [low + i * step for i in range(int(round((high - low) / step)) + 1)]


def _hour_ticks(window: tuple[float, float], tz: tzinfo | None) -> list[float]:
    """Whole hours inside the window, thinned so that at most seven are labelled."""
    first = datetime.fromtimestamp(window[0], tz).replace(minute=0, second=0, microsecond=0).timestamp() + 3600
    hours = int((window[1] - first) // 3600) + 1
    every = max(1, math.ceil(hours / 7))
    return [first + h * 3600 for h in range(0, hours, every)]


def _clock(ts: float, tz: tzinfo | None) -> str:
    return datetime.fromtimestamp(ts, tz).strftime("%H:%M")


@functools.lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)
