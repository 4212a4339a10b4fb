"""A pydicom decoding plugin for JPEG Lossless (Process 14, the usual compression of archived CT) through the
libjpeg-turbo build in imagecodecs.

pydicom's default plugin, pylibjpeg's libjpeg, decodes a 512 x 512 lossless CT frame about four times slower and
holds the GIL while it does, so a thin-slice series decodes on one core however many threads ask. libjpeg-turbo
releases the GIL. `decode_frame` tries this plugin first and falls back to pydicom's own choice, so a stream
libjpeg-turbo refuses is still read if another decoder can.
"""

from __future__ import annotations

import logging

import imagecodecs
import numpy as np
from pydicom import Dataset, uid
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
    """One frame's stored values as pydicom returns them (before any modality LUT), through this plugin where it
    applies."""
    decoder = get_decoder(ds.file_meta.TransferSyntaxUID)
    if PLUGIN in decoder.available_plugins:
        try:
            return decoder.as_array(ds, index=index, decoding_plugin=PLUGIN)[0]
        except Exception as error:  # a stream libjpeg-turbo refuses: let pydicom's own plugins try it
            log.info("libjpeg-turbo could not decode frame %s (%s); trying pydicom's own decoders", index, error)
    return decoder.as_array(ds, index=index)[0]


_register()
