"""The heat-map: where the model looked on the most suspicious slice, as a PNG small enough for a phone."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps

MAX_SIDE = 720  # pixels; a phone screen's width, and a PNG of roughly 100-300 kB
_SHOWN_FROM = 0.3  # activation below this share of the peak is left uncoloured, so the anatomy stays readable
_FADE_IN = 0.3  # the colour then grows to full opacity over this much more of the peak
_OPACITY = 0.6


def render_overlay(grey: np.ndarray, cam: np.ndarray, box: tuple[int, int, int]) -> bytes:
    """PNG of the grey slice with the class-activation map laid over the square `box = (top, left, side)`."""
    base = Image.fromarray(np.round(np.clip(grey, 0, 1) * 255).astype(np.uint8))
    top, left, side = box
    activation = np.maximum(np.nan_to_num(np.asarray(cam, dtype=np.float32)), 0)
    peak = float(activation.max())
    heat = Image.new("F", base.size, 0.0)
    if peak > 0:
        heat.paste(Image.fromarray(activation / peak).resize((side, side), Image.Resampling.BILINEAR), (left, top))
    level = Image.fromarray(np.round(np.asarray(heat) * 255).astype(np.uint8))
    coloured = ImageOps.colorize(level, black="blue", mid="yellow", white="red")
    alpha = np.clip((np.asarray(heat) - _SHOWN_FROM) / _FADE_IN, 0, 1) * _OPACITY
    mask = Image.fromarray(np.round(alpha * 255).astype(np.uint8))
    picture = Image.composite(coloured, base.convert("RGB"), mask)
    picture.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()
