"""The `/status` trend picture: heart rate, SpO2 and blood pressure over the time the readings cover (5 minutes
to 6 hours), as a PNG.

Drawn with Pillow to stay readable on a phone, where a chat shows a picture about 260-300 px across: nearly
square, with few labels, each large for the picture's size. Samples are vitals rows (`ts` in epoch seconds and
the columns `hr`, `spo2`, `sbp`, `dbp`, any of them None). A line breaks wherever readings stop for a while, so a
sensor that was off never looks like a flat trace.
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

WIDTH, HEIGHT = 960, 1120
MARGIN = 24  # left of the heading and the panel titles
LEFT, RIGHT, TOP = 100, 40, 84  # margins around the plots, in pixels
PANEL_GAP = 24
TITLE_HEIGHT = 82  # panel title above each plot, clear of its top value label
AXIS_HEIGHT = 58  # time labels under each plot
LINE_WIDTH = 6
HEADING_SIZE, TITLE_SIZE, LABEL_SIZE = 46, 44, 38  # font sizes; shown 260 px across, the labels are 10 px
MAX_VALUE_STEPS = 4  # intervals between value labels
MAX_TIME_LABELS = 5
SPANS_MIN = (5, 10, 15, 30, 60, 120, 180, 360)  # the picture covers the shortest of these that holds the readings
LONGEST_S = SPANS_MIN[-1] * 60.0
TIME_STEPS_MIN = (1, 2, 5, 10, 15, 30, 60, 120)
VALUE_STEPS = (1, 2, 5, 10, 20, 25, 30, 40, 50, 60, 100, 200)

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
    colour: tuple[int, int, int]  # also of its latest value in the panel's title, which serves as its key


@dataclass(frozen=True, slots=True)
class Panel:
    title: str
    unit: str  # as written after the reading, see `core.vitals.Vital.after_number`
    traces: tuple[Trace, ...]
    low: float  # the value axis always shows at least low..high
    high: float
    normal: tuple[float, float]  # where NEWS2 scores 0 (of the first trace), shaded


PANELS = (
    Panel(VITALS["hr"].label, VITALS["hr"].after_number, (Trace("hr", HEART_RATE),), 40, 140, (51, 90)),
    Panel(VITALS["spo2"].label, VITALS["spo2"].after_number, (Trace("spo2", SPO2),), 85, 100, (96, 100)),
    Panel(
        "Blood pressure", VITALS["sbp"].after_number,
        (Trace("sbp", SYSTOLIC), Trace("dbp", DIASTOLIC)), 40, 180, (111, 219),
    ),
)

Point = tuple[float, float]


def trend_span(samples: Iterable[Mapping[str, Any]], now: float) -> float:
    """Seconds the picture covers: the shortest of `SPANS_MIN` that holds every reading of the last `LONGEST_S`
    seconds before `now`, so that minutes of readings fill the picture rather than its last pixels."""
    first = min((row["ts"] for row in samples if now - LONGEST_S <= row["ts"] <= now), default=now)
    return next(minutes * 60.0 for minutes in SPANS_MIN if now - first <= minutes * 60)


def span_words(span_s: float) -> str:
    """`10 minutes`, `hour`, `6 hours`: what follows "the last"."""
    minutes = round(span_s / 60)
    if minutes < 60:
        return f"{minutes} minutes"
    return "hour" if minutes == 60 else f"{minutes / 60:g} hours"


def render_trend(
    samples: Iterable[Mapping[str, Any]],
    now: float,
    span_s: float,
    gap_s: float = 300.0,
    tz: tzinfo | None = None,
) -> bytes:
    """A PNG of the vitals in `samples` over the `span_s` seconds before `now` (epoch seconds), times shown in `tz`."""
    start = now - span_s
    rows = sorted((row for row in samples if start <= row["ts"] <= now), key=lambda row: row["ts"])
    image = Image.new("RGB", (WIDTH, HEIGHT), BACKGROUND)
    draw = ImageDraw.Draw(image)
    zone = datetime.fromtimestamp(now, tz).astimezone(tz).tzname()
    heading = f"Last {span_words(span_s)}, up to {_clock(now, tz)} {zone}"
    draw.text((MARGIN, 18), heading, font=_font(HEADING_SIZE), fill=INK)
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
    low, high, step = _value_axis(min([panel.low, *values]), max([panel.high, *values]))

    def x_of(ts: float) -> float:
        return plot[0] + (ts - window[0]) / (window[1] - window[0]) * (plot[2] - plot[0])

    def y_of(value: float) -> float:
        return plot[3] - (value - low) / (high - low) * (plot[3] - plot[1])

    _draw_title(draw, panel, rows, span[0])
    if panel.normal[0] < high and panel.normal[1] > low:
        band = (plot[0], y_of(min(panel.normal[1], high)), plot[2], y_of(max(panel.normal[0], low)))
        draw.rectangle(band, fill=NORMAL_BAND)
    small = _font(LABEL_SIZE)
    for value in _frange(low, high, step):
        y = y_of(value)
        draw.line((plot[0], y, plot[2], y), fill=GRID, width=2)
        draw.text((plot[0] - 12, y), f"{value:g}", font=small, fill=MUTED, anchor="rm")
    for tick in _time_ticks(window, tz):
        x = x_of(tick)
        draw.line((x, plot[1], x, plot[3]), fill=GRID, width=2)
        label = _clock(tick, tz)
        half = draw.textlength(label, font=small) / 2
        if plot[0] <= x - half and x + half <= WIDTH:  # clear of the value labels and the picture's edge
            draw.text((x, plot[3] + 10), label, font=small, fill=MUTED, anchor="mt")
    draw.rectangle(plot, outline=MUTED, width=2)
    if not values:
        draw.text(((plot[0] + plot[2]) / 2, (plot[1] + plot[3]) / 2), "no readings", font=_font(TITLE_SIZE),
                  fill=MUTED, anchor="mm")
    for trace, trace_runs in runs.items():
        for run in trace_runs:
            points = [(x_of(ts), y_of(value)) for ts, value in run]
            if len(points) == 1:
                (x, y), r = points[0], LINE_WIDTH
                draw.ellipse((x - r, y - r, x + r, y + r), fill=trace.colour)
            else:
                draw.line(points, fill=trace.colour, width=LINE_WIDTH, joint="curve")


def _draw_title(draw: ImageDraw.ImageDraw, panel: Panel, rows: list[Mapping[str, Any]], top: int) -> None:
    """Panel name with the latest reading of each line, each number in its line's colour (`120/80`)."""
    font = _font(TITLE_SIZE)
    parts = [(f"{panel.title}  ", INK)]
    for number, trace in enumerate(panel.traces):
        value = _latest(rows, trace.column)
        parts += [("/", INK)] if number else []
        parts.append(("--" if value is None else f"{value:.0f}", trace.colour))
    parts.append((panel.unit, INK))  # as written after a number: "/min", "%", " mmHg"
    x = float(MARGIN)
    for text, colour in parts:
        draw.text((x, top + 8), text, font=font, fill=colour)
        x += draw.textlength(text, font=font)


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


def _value_axis(low: float, high: float) -> tuple[float, float, float]:
    """The value axis holding `low`..`high`: round ends and a round step, with at most `MAX_VALUE_STEPS` steps."""
    for step in VALUE_STEPS:
        bottom, top = math.floor(low / step) * step, math.ceil(high / step) * step
        if top - bottom <= MAX_VALUE_STEPS * step:
            break
    return bottom, top, step


def _frange(low: float, high: float, step: float) -> list[float]:
    return [low + i * step for i in range(int(round((high - low) / step)) + 1)]


def _time_ticks(window: tuple[float, float], tz: tzinfo | None) -> list[float]:
    """Round clock times inside the window (every 1, 2, 5, ... minutes), about `MAX_TIME_LABELS` of them."""
    span = window[1] - window[0]
    step = 60.0 * next((m for m in TIME_STEPS_MIN if span <= MAX_TIME_LABELS * m * 60), TIME_STEPS_MIN[-1])
    midnight = datetime.fromtimestamp(window[0], tz).replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    first = midnight + math.ceil((window[0] - midnight) / step) * step
    return [first + n * step for n in range(int((window[1] - first) // step) + 1)]


def _clock(ts: float, tz: tzinfo | None) -> str:
    return datetime.fromtimestamp(ts, tz).strftime("%H:%M")


@functools.lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)
