"""What the node accepts: CT and Enhanced CT images, in the transfer syntaxes the installed decoders read."""

from __future__ import annotations

from pydicom.pixels.decoders.base import get_decoder
from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLossless,
    JPEGLosslessSV1,
    RLELossless,
)
from pynetdicom.presentation import PresentationContext, build_context
from pynetdicom.sop_class import CTImageStorage, EnhancedCTImageStorage, Verification

ACCEPTED_SOP_CLASSES = (CTImageStorage, EnhancedCTImageStorage)
# Uncompressed, deflate, RLE, lossless JPEG and JPEG 2000: lossless or near it, as triage should read.
CANDIDATE_SYNTAXES = (
    ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian,
    RLELossless, JPEGLosslessSV1, JPEGLossless, JPEG2000Lossless, JPEG2000,
)


def readable_syntaxes(candidates: tuple[UID, ...] = CANDIDATE_SYNTAXES) -> list[UID]:
    """The candidates whose pixel data an installed decoder can read (uncompressed ones always)."""
    readable = []
    for syntax in candidates:
        if not syntax.is_compressed:
            readable.append(syntax)
            continue
        try:
            if get_decoder(syntax).is_available:
                readable.append(syntax)
        except NotImplementedError:
            continue
    return readable


def supported_contexts() -> list[PresentationContext]:
    """The presentation contexts the SCP offers: C-ECHO, and C-STORE of CT images in readable syntaxes."""
    syntaxes = readable_syntaxes()
    return [build_context(Verification)] + [build_context(uid, syntaxes) for uid in ACCEPTED_SOP_CLASSES]
