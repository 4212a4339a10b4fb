"""JPEG Lossless (Process 14, the usual compression of archived CT) decoded by the libjpeg-turbo build in
imagecodecs, the fastest lossless JPEG decoder on PyPI that was measured (imagecodecs' liblj92 and SOF3 decoders
and pylibjpeg's libjpeg are slower).

pydicom's default plugin, pylibjpeg's libjpeg, decodes a 512 x 512 lossless CT frame about four times slower and
holds the GIL while it does, so a thin-slice series decodes on one core however many threads ask. libjpeg-turbo
releases the GIL. `decode_frame` hands each frame's bytes to libjpeg-turbo itself and does the little pydicom
would do after it (the pixel representation, bits beyond Bits Stored): going through pydicom's decoding machinery
costs a quarter more per frame. A stream libjpeg-turbo refuses, or a frame unlike its header, falls back to
pydicom's own choice of plugin. The same decoder is also registered as a pydicom plugin, `PLUGIN`.
"""

from __future__ import annotations

import logging

import imagecodecs
import numpy as np
from pydicom import Dataset, uid
from pydicom.encaps import get_frame
from pydicom.pixels import get_decoder
from pydicom.pixels.decoders.base import DecodeRunner

log = logging.getLogger(__name__)

PLUGIN = "imagecodecs"
SYNTAXES = (uid.JPEGLossless, uid.JPEGLosslessSV1)
DECODER_DEPENDENCIES = {syntax: ("imagecodecs>=2024.1",) for syntax in SYNTAXES}


def is_available(transfer_syntax: str) -> bool:
    """pydicom's plugin contract: whether this plugin can decode the transfer syntax here."""
    return transfer_syntax in SYNTAXES and bool(imagecodecs.JPEG8.available)


def _decode_frame(src: bytes, runner: DecodeRunner) -> bytes:
    """pydicom's plugin contract: one encoded frame's samples, in the container pydicom expects."""
    return imagecodecs.jpeg8_decode(src).tobytes()


def _register() -> None:
    for syntax in SYNTAXES:
        decoder = get_decoder(syntax)
        if PLUGIN not in decoder.available_plugins:
            decoder.add_plugin(PLUGIN, (__name__, "_decode_frame"))


def decode_frame(ds: Dataset, index: int | None) -> np.ndarray:
    """One frame's stored values as pydicom returns them (before any modality LUT): JPEG Lossless straight
    through libjpeg-turbo, anything else (or a frame it cannot decode) through pydicom."""
    syntax = ds.file_meta.TransferSyntaxUID
    if is_available(syntax):
        try:
            return _turbo_frame(ds, index)
        except Exception as error:  # a stream libjpeg-turbo refuses, or samples unlike the header: pydicom's try it
            log.info("libjpeg-turbo could not decode frame %s (%s); trying pydicom's own decoders", index, error)
    return get_decoder(syntax).as_array(ds, index=index)[0]


def _turbo_frame(ds: Dataset, index: int | None) -> np.ndarray:
    """As pydicom decodes a lossless frame: samples of Bits Allocated, signed as Pixel Representation says, the
    bits above Bits Stored replaced by the sign (pydicom's `correct_unused_bits`)."""
    offsets = None
    if "ExtendedOffsetTable" in ds:
        offsets = (ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths)
    frames = int(ds.get("NumberOfFrames") or 1)
    samples = imagecodecs.jpeg8_decode(
        get_frame(ds.PixelData, index or 0, extended_offsets=offsets, number_of_frames=frames)
    )
    allocated = int(ds.BitsAllocated)
    dtype = np.dtype(f"<{'ui'[int(ds.PixelRepresentation)]}{allocated // 8}")
    if samples.shape != (int(ds.Rows), int(ds.Columns)) or samples.dtype.itemsize != dtype.itemsize:
        raise ValueError("the frame's samples do not match its header")
    values = samples.view(dtype)
    unused = allocated - int(ds.get("BitsStored") or allocated)
    if unused > 0:
        np.left_shift(values, unused, out=values)
        np.right_shift(values, unused, out=values)
    return values


_register()
