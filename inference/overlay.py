"""The heat-map: where the model found evidence of haemorrhage on the most suspicious slice, inside the skull only,
with the verdict written under the picture, as a PNG small enough for a phone.

Pure functions, data in and PNG bytes out. The class-activation map is coarse (a few cells across the head):
it is upsampled smoothly, only its positive evidence is coloured, and the colour is confined to the
intracranial region found on the slice itself, so it never lies over scalp, skull or the air around the head.

A map is coloured only when a region of it stands out (`region_stands_out`); otherwise the picture stays grey and,
on a flagged study, its caption says that no single region stands out, so a faint tint is never passed off as
the place the model looked.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from inference.masks import dilated, eroded, filled
from inference.percent import percent

MAX_SIDE = 720  # pixels of the image part: a phone screen's width, and a PNG of roughly 100-400 kB
_MIN_SIDE = 480  # smaller pictures are enlarged to this, so the caption stays readable beside them

# Colour: the positive evidence as a share of the slice's strongest evidence, for or against haemorrhage.
_SHOWN_FROM = 0.2  # below this share nothing is coloured, so the anatomy stays readable
_FADE_IN = 0.8  # the colour then grows with the evidence, reaching full opacity only at the strongest
_OPACITY = {True: 0.55, False: 0.3}  # flagged study: clear colour; not flagged: faint, the caption carries the news
_SMOOTHING = 0.25  # Gaussian sigma after bicubic upsampling, as a share of one map cell
_SMOOTHING_SIDE = 128  # pixels of the grid the map is smoothed on before it is resized to the box
_COLOURS = np.array([[255, 235, 60], [255, 140, 0], [215, 0, 0]], dtype=np.float32)  # weak, middle, strong

# A region stands out when the map's strongest evidence for haemorrhage is at least this share of its strongest
# evidence of either sign, and at least this large (map units: the map's mean plus a bias is the slice's logit).
STANDS_OUT_SHARE = 0.5
STANDS_OUT_EVIDENCE = 1.0

# The intracranial region, on grey levels in [0, 1] of a brain window.
_BONE = 0.95  # at or above: bone (saturated white in a brain window)
_TISSUE = 0.08  # above: soft tissue or fluid, not air
_EROSION = 0.008  # of the image side: breaks thin bridges to the neck and face; the margin kept from the skull
_MIN_PART = 0.1  # a separate intracranial part counts when at least this share of the largest one
_FEATHER = 0.012  # of the image side: the colour fades in over this distance from the region's edge
_MASK_SIDE = 256  # pixels across of the copy the region is found on

# Caption band.
_BAND = (18, 18, 18)
_VERDICT_COLOUR = {True: (255, 110, 80), False: (150, 210, 255)}
_TEXT = (240, 240, 240)
_MUTED = (170, 170, 170)
_DISCLAIMER = "Decision support, not a diagnosis."
_NOT_FOCAL = "No single region stands out on this slice"


@dataclass(frozen=True)
class OverlayCaption:
    """What the picture says about the study under the heat-map."""

    flagged: bool  # the study verdict is "haemorrhage suspected"
    probability: float  # the study probability the verdict rests on
    threshold: float
    slice_number: int  # the slice shown, counted from 1 at the lowest slice
    slice_count: int
    suspected_type: str | None = None  # e.g. "epidural", only where the model is good enough to name it

    def lines(self, focal: bool = True) -> list[str]:
        """The caption's lines, the verdict first and the decision-support line last. `focal` is whether a
        region of the map stands out (and is coloured): a flagged study whose slice has none says so, so an
        uncoloured picture is not taken for a failed one."""
        lines = [
            "Haemorrhage suspected" if self.flagged else "No haemorrhage suspected",
            f"Probability {percent(self.probability)} (threshold {percent(self.threshold)})",
        ]
        if self.slice_count > 1:
            lines.append(f"Heat-map on slice {self.slice_number} of {self.slice_count}")
        if self.flagged and not focal:
            lines.append(_NOT_FOCAL)
        if self.suspected_type:
            lines.append(f"Suspected type: {self.suspected_type}")
        lines.append(_DISCLAIMER)
        return lines


def region_stands_out(cam: np.ndarray) -> bool:
    """Whether the class-activation map points at a region: its strongest positive cell is at least
    `STANDS_OUT_SHARE` of its strongest cell of either sign and at least `STANDS_OUT_EVIDENCE`.

    On the CT-ICH slice pictures the model scores above 0.5 the share has two humps, with few slices between 0.3
    and 0.9: on 110 of 196 bleeding slices the strongest cell is evidence for haemorrhage (share 1, all but one
    over 1.4), while on 54 of 108 clean slices no cell reaches a tenth of the strongest evidence against (the score
    rests on the slice as a whole; on the shared GE series' most suspicious slice, a third). By this rule 124 of
    those bleeding slices show a region and 24 of the clean ones."""
    evidence = np.nan_to_num(np.asarray(cam, dtype=np.float32))
    if not evidence.size:
        return False
    strongest = float(evidence.max())
    return strongest >= STANDS_OUT_EVIDENCE and strongest >= STANDS_OUT_SHARE * float(np.abs(evidence).max())


def render_overlay(grey: np.ndarray, cam: np.ndarray, box: tuple[int, int, int], caption: OverlayCaption) -> bytes:
    """PNG of the grey slice with the class-activation map laid over the square `box = (top, left, side)` (source
    pixels, as the model saw it), coloured inside the head only when a region stands out, above a band with the
    caption."""
    height, width = np.shape(grey)
    scale = _display_scale(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    shown = np.asarray(Image.fromarray(np.asarray(grey, dtype=np.float32)).resize(size, Image.Resampling.BICUBIC))
    shown = np.clip(np.nan_to_num(shown), 0.0, 1.0)
    top, left, side = box
    shown_box = (round(top * scale), round(left * scale), max(1, round(side * scale)))
    focal = region_stands_out(cam)
    alpha = heat_alpha(shown, cam, shown_box, caption.flagged) if focal else np.zeros(shown.shape, np.float32)
    grey_levels = np.round(shown * 255)
    picture = np.repeat(grey_levels.astype(np.uint8)[..., None], 3, axis=2)
    coloured = alpha > 0  # blended there only: most of the picture keeps its grey
    strength = alpha[coloured][:, None]
    colour = _colour(alpha[coloured] / _OPACITY[caption.flagged])
    picture[coloured] = np.round(grey_levels[coloured][:, None] * (1 - strength) + colour * strength)
    image = Image.fromarray(picture, "RGB")
    buffer = io.BytesIO()
    captioned = _with_caption(image, caption, focal)
    captioned.save(buffer, format="PNG", compress_level=3)  # a little larger, several times faster
    return buffer.getvalue()


def heat_alpha(grey: np.ndarray, cam: np.ndarray, box: tuple[int, int, int], flagged: bool) -> np.ndarray:
    """Opacity in [0, 1] of the colour over each pixel of `grey`: zero outside the intracranial region.

    The raw map is upsampled bicubically to the box and smoothed, then only its positive part is kept, as a share
    of the strongest evidence of either sign on the slice: a slice the model found clean stays uncoloured.
    """
    evidence = np.nan_to_num(np.asarray(cam, dtype=np.float32))
    alpha = np.zeros(grey.shape, dtype=np.float32)
    if not evidence.size or float(evidence.max()) <= 0:
        return alpha
    top, left, side = box
    # Upsampled and smoothed on a grid of at most _SMOOTHING_SIDE cells, then resized to the box: the map has only
    # a few cells, so the result is as smooth as smoothing at full size, at a fraction of the cost.
    grid = max(1, min(side, _SMOOTHING_SIDE))
    smooth = np.asarray(Image.fromarray(evidence).resize((grid, grid), Image.Resampling.BICUBIC))
    smooth = ndimage.gaussian_filter(smooth, sigma=_SMOOTHING * grid / max(evidence.shape), mode="nearest")
    smooth = np.asarray(Image.fromarray(smooth).resize((side, side), Image.Resampling.BILINEAR))
    smooth = smooth / max(float(np.abs(smooth).max()), 1e-12)
    share = np.zeros(grey.shape, dtype=np.float32)
    rows = slice(max(top, 0), min(top + side, grey.shape[0]))
    cols = slice(max(left, 0), min(left + side, grey.shape[1]))
    if rows.start >= rows.stop or cols.start >= cols.stop:
        return alpha
    share[rows, cols] = smooth[rows.start - top : rows.stop - top, cols.start - left : cols.stop - left]
    inside = intracranial_mask(grey)
    inside[:, : cols.start] = inside[:, cols.stop :] = False  # nothing is known beyond the box
    inside[: rows.start] = inside[rows.stop :] = False
    feather = max(1.0, _FEATHER * max(grey.shape))
    # Chessboard distance: within the few pixels of the fade it differs from Euclidean only along diagonals, at a
    # seventh of the cost on a full slice.
    edge = np.clip(ndimage.distance_transform_cdt(inside, metric="chessboard") / feather, 0.0, 1.0)
    alpha = np.clip((share - _SHOWN_FROM) / _FADE_IN, 0.0, 1.0) * edge * _OPACITY[flagged]
    return alpha.astype(np.float32)


def intracranial_mask(grey: np.ndarray) -> np.ndarray:
    """Boolean mask of the space inside the skull on a brain-window grey slice, a little inside its edge.

    Soft tissue that is not bone is split into parts after a small erosion; the parts that reach the outside of
    the head (scalp, face, neck) are dropped, the rest (brain, with any blood inside it) kept, grown back, closed
    and hole-filled, and kept a few pixels clear of the skull, so the colour never lies on the inner table. When no
    part is enclosed (a picture without visible bone), the head itself, well eroded, stands in.

    The region is found on a copy at most `_MASK_SIDE` pixels across and scaled back (a quarter of the labelling
    and morphology of a 512-pixel slice); the colour's fade from the edge smooths its steps of a pixel or two.
    """
    values = np.asarray(grey, dtype=np.float32)
    bone = values >= _BONE
    height, width = values.shape
    scale = _MASK_SIDE / max(height, width, 1)
    if scale >= 1:
        return _intracranial(values, bone)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = np.asarray(Image.fromarray(values).resize(size, Image.Resampling.BILINEAR))
    # Thin bone blurs below the bone level on the copy: there a pixel is bone when any bone reaches into it.
    small_bone = np.asarray(Image.fromarray(bone.astype(np.float32)).resize(size, Image.Resampling.BILINEAR)) > 0
    mask = Image.fromarray(_intracranial(small, small_bone)).resize((width, height), Image.Resampling.NEAREST)
    return np.array(mask, dtype=bool)


def _intracranial(values: np.ndarray, bone: np.ndarray) -> np.ndarray:
    """`intracranial_mask` of grey levels `values` where `bone` is bone, at their own size."""
    tissue = values > _TISSUE
    head = _largest_part(tissue)
    if not head.any():
        return head
    head = filled(head)
    step = max(1, round(_EROSION * max(values.shape)))
    soft = head & tissue & ~bone
    core = eroded(soft, step)
    parts, count = ndimage.label(core)
    if count:
        near_outside = dilated(~head, step + 2, border=True)
        sizes = np.bincount(parts.ravel(), minlength=count + 1).astype(float)
        sizes[0] = 0
        sizes[np.unique(parts[near_outside & core])] = 0
        if sizes.max() > 0:
            kept = (sizes >= _MIN_PART * sizes.max())[parts]
            grown = dilated(kept, step) & soft
            skull = bone & ~filled(grown)  # bone not enclosed by brain
            closed = filled(eroded(dilated(grown, 2 * step), 2 * step) | grown)  # a closing, then holes filled
            return closed & ~dilated(skull, step)
    return eroded(head, 6 * step)


def _largest_part(mask: np.ndarray) -> np.ndarray:
    parts, count = ndimage.label(mask)
    if not count:
        return np.zeros(mask.shape, dtype=bool)
    sizes = np.bincount(parts.ravel())
    sizes[0] = 0
    return parts == int(np.argmax(sizes))


def _display_scale(height: int, width: int) -> float:
    longest = max(height, width, 1)
    if longest > MAX_SIDE:
        return MAX_SIDE / longest
    return max(1.0, min(_MIN_SIDE, MAX_SIDE) / longest)


def _colour(strength: np.ndarray) -> np.ndarray:
    """RGB per pixel from yellow (weak) through orange to red (strong), for a strength in [0, 1]."""
    level = np.clip(strength, 0.0, 1.0) * (len(_COLOURS) - 1)
    low = np.minimum(level.astype(int), len(_COLOURS) - 2)
    fraction = (level - low)[..., None]
    return _COLOURS[low] * (1 - fraction) + _COLOURS[low + 1] * fraction


def _with_caption(image: Image.Image, caption: OverlayCaption, focal: bool) -> Image.Image:
    """The image above a dark band carrying the caption, in letters sized to the image's width."""
    width = image.width
    big = ImageFont.load_default(size=max(16, round(width / 17)))
    small = ImageFont.load_default(size=max(13, round(width / 25)))
    margin = max(8, round(width / 40))
    lines = caption.lines(focal)
    styled = [(lines[0], big, _VERDICT_COLOUR[caption.flagged])]
    styled += [(line, small, _MUTED if line == _DISCLAIMER else _TEXT) for line in lines[1:]]
    wrapped = [(part, font, colour) for text, font, colour in styled for part in _wrap(text, font, width - 2 * margin)]
    heights = [round(font.size * 1.35) for _, font, _ in wrapped]
    band = Image.new("RGB", (width, image.height + sum(heights) + 2 * margin), _BAND)
    band.paste(image, (0, 0))
    draw = ImageDraw.Draw(band)
    y = image.height + margin
    for (text, font, colour), line_height in zip(wrapped, heights):
        draw.text((margin, y), text, font=font, fill=colour)
        y += line_height
    return band


def _wrap(text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, room: float) -> list[str]:
    if font.getlength(text) <= room:  # the usual case: measured once, not word by word
        return [text]
    lines: list[str] = []
    for word in text.split():
        if lines and font.getlength(f"{lines[-1]} {word}") <= room:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines or [""]
