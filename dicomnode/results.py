"""Results back to PACS: each triaged series becomes a DICOM Secondary Capture in the same study (series
"HemoWatch triage"), the heat-map of its most suspicious slice with the verdict band and the disclaimer burned in,
sent to DICOM_RESULT_DESTINATION with retries and backoff. Never on the alert's path.

The capture carries the study's UID, study date and time and accession number, and no patient name, id or birth
date (HemoWatch never keeps them): a PACS that files objects by patient id must accept it by Study Instance UID.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import SecondaryCaptureImageStorage

from dicomnode.echo import NodeAddress
from inference.percent import percent

log = logging.getLogger(__name__)

SERIES_DESCRIPTION = "HemoWatch triage"
SERIES_NUMBER = 9901
DISCLAIMER = "Decision support, not a diagnosis."
VERDICT_WORDS = {"hemorrhage": "haemorrhage suspected", "no_hemorrhage": "no haemorrhage suspected"}
NOT_FOCAL = "no single region stands out on the heat-map"


@dataclass(frozen=True, slots=True)
class TriageResult:
    """What goes back to PACS about one triaged series (held in memory only, until it is sent)."""

    study_uid: str
    study_date: str
    study_time: str
    accession: str
    verdict: str
    probability: float
    threshold: float
    model_name: str
    model_version: str
    overlay_png: bytes
    heatmap_shows_region: bool


def describe(result: TriageResult) -> str:
    """The words in the capture's comments: verdict, probability and threshold, whether a flagged study's
    heat-map shows no region, model, disclaimer."""
    plain = result.verdict == "hemorrhage" and not result.heatmap_shows_region
    return (f"{VERDICT_WORDS.get(result.verdict, result.verdict)}; probability {percent(result.probability)} "
            f"(threshold {percent(result.threshold)}); {NOT_FOCAL + '; ' if plain else ''}"
            f"model {result.model_name} {result.model_version}. {DISCLAIMER}")


def secondary_capture(result: TriageResult, now: datetime | None = None) -> Dataset:
    """The heat-map as an RGB Secondary Capture image in the result's study, in a series of its own."""
    now = now or datetime.now(UTC)
    pixels = np.asarray(Image.open(io.BytesIO(result.overlay_png)).convert("RGB"))
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, meta.MediaStorageSOPInstanceUID
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "", "", "", ""
    ds.StudyInstanceUID = result.study_uid
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber = result.study_date, result.study_time, result.accession
    ds.ReferringPhysicianName, ds.StudyID = "", ""
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[result.study_uid, SERIES_DESCRIPTION])  # one per study
    ds.SeriesNumber, ds.InstanceNumber = SERIES_NUMBER, 1
    ds.Modality, ds.ConversionType = "OT", "WSD"
    ds.SeriesDescription = SERIES_DESCRIPTION
    ds.Manufacturer, ds.SoftwareVersions = "HemoWatch", f"{result.model_name} {result.model_version}"
    ds.ContentDate, ds.ContentTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.ImageComments = describe(result)
    ds.BurnedInAnnotation = "YES"  # the verdict band and the disclaimer are part of the picture
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.Rows, ds.Columns = pixels.shape[:2]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = pixels.tobytes()
    return ds


def send(dataset: Dataset, calling_ae: str, destination: NodeAddress, timeout_s: float = 30.0) -> str | None:
    """C-STORE the capture; None on success, else what went wrong (to retry)."""
    ae = AE(ae_title=calling_ae)
    ae.add_requested_context(SecondaryCaptureImageStorage, ExplicitVRLittleEndian)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
    assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title)
    if not assoc.is_established:
        return "no association"
    try:
        status = assoc.send_c_store(dataset)
    finally:
        assoc.release()
    if not status or "Status" not in status:
        return "no answer"
    return None if status.Status in (0x0000, 0xB000, 0xB007, 0xB006) else f"status 0x{status.Status:04X}"
