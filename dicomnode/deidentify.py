"""De-identification of a received instance before any of it is written: an allow-list, applied at every depth.

Only the attributes that triage reads and that pydicom needs to decode the pixels are kept, inside sequences as at
the top level; everything else goes, every private tag among it. This removes at least what the DICOM Basic
Application Level Confidentiality Profile (PS3.15 Annex E, table E.1-1) removes or blanks, with three of its
options: *Retain UIDs* (the Study, Series and SOP Instance UIDs, which the node hashes and which a result sent back
to PACS must carry), *Retain Longitudinal Temporal Information with Full Dates* (the study date and time shown in
an alert) and, when DICOM_NOTIFY_FIELDS names it, the accession number (shown so the doctor can open the study).
"""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.datadict import tag_for_keyword

# Identifiers that Annex E would remove or replace, kept under the options named above.
RETAINED_BY_OPTION = frozenset({"StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "StudyDate", "StudyTime"})
ACCESSION = "AccessionNumber"

KEPT = RETAINED_BY_OPTION | frozenset({
    # what the instance is, and the header checks of triage
    "SpecificCharacterSet", "ImageType", "SOPClassUID", "Modality", "BodyPartExamined", "SeriesNumber",
    "InstanceNumber",
    # geometry, single-frame and Enhanced CT (functional groups)
    "ImagePositionPatient", "ImageOrientationPatient", "SharedFunctionalGroupsSequence",
    "PerFrameFunctionalGroupsSequence", "PlanePositionSequence", "PlaneOrientationSequence", "PixelMeasuresSequence",
    "PixelValueTransformationSequence", "PixelSpacing", "SliceThickness", "SpacingBetweenSlices",
    # the image pixel module and Hounsfield units
    "SamplesPerPixel", "PhotometricInterpretation", "PlanarConfiguration", "NumberOfFrames", "Rows", "Columns",
    "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation", "PixelPaddingValue", "PixelPaddingRangeLimit",
    "RescaleIntercept", "RescaleSlope", "RescaleType", "ModalityLUTSequence", "LUTDescriptor", "ModalityLUTType",
    "LUTData", "LossyImageCompression", "LossyImageCompressionRatio", "LossyImageCompressionMethod",
    "ExtendedOffsetTable", "ExtendedOffsetTableLengths", "FloatPixelData", "DoubleFloatPixelData", "PixelData",
})
_KEPT_TAGS = frozenset(tag_for_keyword(keyword) for keyword in KEPT)


def deidentify(dataset: Dataset, keep_accession: bool) -> None:
    """Remove, in place and at every depth, each attribute not in `KEPT` (the accession number kept on request)."""
    kept = _KEPT_TAGS | {tag_for_keyword(ACCESSION)} if keep_accession else _KEPT_TAGS
    _keep_only(dataset, kept)


def _keep_only(dataset: Dataset, kept: frozenset[int]) -> None:
    for tag in [tag for tag in dataset.keys() if tag not in kept]:  # private tags are never in `kept`
        del dataset[tag]
    for tag in list(dataset.keys()):
        element = dataset[tag]  # converted from its raw form: a sequence's items become datasets
        if element.VR == "SQ":
            for item in element.value:
                _keep_only(item, kept)
