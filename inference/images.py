"""PNG and JPEG pictures of a slice: decoded in memory within Pillow's decompression-bomb limit."""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterable

import numpy as np
from PIL import Image, UnidentifiedImageError

from inference.errors import InputError
from inference.limits import Limits
from inference.preprocess import grey_from_image
from inference.scan import Series, Slice

_SIGNATURES = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG"}
_COLOURED = 0.2  # a pixel whose channels differ by more than this (of full scale) is clearly coloured
_COLOUR_SAMPLE_SIDE = 128


def picture_format(data: bytes) -> str | None:
    """"PNG" or "JPEG" when the bytes start like one, else None."""
    return next((name for magic, name in _SIGNATURES.items() if data.startswith(magic)), None)


def read_picture(data: bytes, limits: Limits) -> Series:
    """One PNG or JPEG as a one-slice series."""
    kind = picture_format(data) or "image"
    too_large = InputError(
        f"The picture is larger than HemoWatch accepts ({limits.max_image_pixels:,} pixels at most). "
        "Send a smaller export."
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=["PNG", "JPEG"])
            width, height = image.size
            if width * height > limits.max_image_pixels:
                raise too_large
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise too_large from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise InputError(f"The {kind} file is damaged or incomplete.") from error
    grey = grey_from_image(image)
    return Series(
        label=f"picture ({kind})",
        slices=[Slice(picture=grey, colour_share=_colour_share(image))],
        is_ct=True,
    )


def read_picture_series(pictures: Iterable[tuple[str, bytes]], count: int, limits: Limits) -> Series:
    """`count` pictures `(name, content)` of one scan's slices, the lowest first, as one series; a picture that
    cannot be read is named in the error."""
    if count > limits.max_slices:
        raise InputError(f"The scan has {count} slices; at most {limits.max_slices} can be analysed at once.")
    slices: list[Slice] = []
    pixels = 0
    for name, data in pictures:
        try:
            (item,) = read_picture(data, limits).slices
        except InputError as error:
            raise InputError(f"{name}: {error}") from error
        assert item.picture is not None
        pixels += item.picture.size
        if pixels > limits.max_scan_pixels:
            raise InputError(
                f"The pictures have over {limits.max_scan_pixels / 1e6:.0f} million pixels together; at most that "
                "many can be analysed at once."
            )
        slices.append(item)
    return Series(label=f"pictures ({len(slices)} slices)", slices=slices, is_ct=True)


def _colour_share(image: Image.Image) -> float:
    """Share of pixels that are clearly coloured, measured on a small copy.

    A colour cast over the whole picture (a phone photo of a screen, a tinted export) is not colour: each
    channel is first fitted as a fixed multiple of the pixel's brightness (one gain per channel), and only
    what that single tint cannot explain counts.
    """
    sample = image.convert("RGB")
    sample.thumbnail((_COLOUR_SAMPLE_SIDE, _COLOUR_SAMPLE_SIDE))
    channels = np.asarray(sample, dtype=np.float32).reshape(-1, 3) / 255.0
    brightness = channels.mean(axis=1, keepdims=True)
    gains = (channels * brightness).sum(axis=0) / max(float((brightness**2).sum()), 1e-6)
    residual = channels - brightness * gains
    return float(((residual.max(axis=1) - residual.min(axis=1)) > _COLOURED).mean())
