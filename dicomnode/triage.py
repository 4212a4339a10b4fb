"""One spooled series to one recorded result: header checks, the `Analyzer`, and what is kept of it (the audit
rows, and the study's case for a doctor's read).

Synchronous and free of the event loop: the node runs it in a worker thread.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pydicom
import sqlite_utils
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from dicomnode.results import TriageResult
from dicomnode.spool import SpooledSeries
from inference.analyzer import SHIPPED, Judging, ScanAnalyzer
from inference.errors import InputError
from inference.result import StudyResult
from store.schema import atomic
from store.site_profiles import keep_case, study_ref
from store.studies import SKIPPED, SeriesRecord, StudyHeader, record_series, study_series

HEAD_BODY_PARTS = {"HEAD", "BRAIN", "SKULL", "HEADNECK", "HEAD NECK", "CEREBRUM", "CRANIUM"}


@dataclass(frozen=True, slots=True)
class SeriesOutcome:
    record: SeriesRecord
    header: StudyHeader
    overlay_png: bytes | None
    heatmap_shows_region: bool | None  # a region of the heat-map stands out
    files: list[Path]  # the instances analysed, to delete once the result is stored
    for_pacs: TriageResult | None  # what goes back to PACS (a triaged series only); never stored
    assessed: StudyResult | None = None  # the verdict with its slices' features, when slices were assessed


def record_outcome(db: sqlite_utils.Database, outcome: SeriesOutcome, now: float) -> int | None:
    """Record the series (raising its study's alert when flagged; returns that alert's id) and, when the study's
    verdict now comes from this series, keep its features as the study's case for a doctor's read. One
    transaction, so a study's case always matches its recorded verdict."""
    record, result = outcome.record, outcome.assessed
    with atomic(db):
        alert_id = record_series(db, record, outcome.header, outcome.overlay_png, now, outcome.heatmap_shows_region)
        if result is not None and study_series(db, record.study_hash) == record.series_hash:
            keep_case(
                db, scan_ref=study_ref(record.study_hash), source="dicom", model_sha256=result.model.sha256,
                features=result.slice_features, shipped=result.slice_probabilities, now=now,
                verdict=result.verdict, probability=result.probability, profile_id=record.site_profile_id,
            )
    return alert_id


def study_time(header: Dataset) -> str | None:
    """"2026-11-26 14:02" from StudyDate and StudyTime, or None when the header has no date."""
    date = str(header.get("StudyDate", "") or "")
    clock = str(header.get("StudyTime", "") or "")
    if len(date) != 8 or not date.isdigit():
        return None
    text = f"{date[:4]}-{date[4:6]}-{date[6:]}"
    return f"{text} {clock[:2]}:{clock[2:4]}" if len(clock) >= 4 and clock[:4].isdigit() else text


def not_head_ct(header: Dataset) -> str | None:
    """Why the header says this is not a head CT, or None."""
    modality = str(header.get("Modality", "") or "")
    if modality != "CT":
        return f"Modality is {modality or 'missing'}, not CT"
    body_part = str(header.get("BodyPartExamined", "") or "").upper()
    if body_part and body_part not in HEAD_BODY_PARTS:
        return f"Body part is {body_part}, not head"
    return None


def analyse_series(
    analyzer: ScanAnalyzer, spooled: SpooledSeries, show_accession: bool, clock: Callable[[], float],
    judging: Judging = SHIPPED,
) -> SeriesOutcome:
    """Read the series from the spool and judge it (as `judging` says); a series that is not an axial head CT is
    `skipped`. `spooled.received_at` is when its last instance arrived."""
    files = sorted(spooled.folder.glob("*.dcm"))
    try:
        header = pydicom.dcmread(files[0], stop_before_pixels=True) if files else Dataset()
    except (InvalidDicomError, OSError, ValueError):
        header = Dataset()
    accession = str(header.get("AccessionNumber", "") or "") or None
    study = StudyHeader(accession if show_accession else None, study_time(header))
    reason, result = not_head_ct(header), None
    if reason is None:
        try:
            (result, *_) = analyzer.analyze_path(spooled.folder, judging=judging)
        except InputError as error:
            reason = str(error)
    if result is not None and reason is None:
        reason = next(iter(result.warnings), None) or (result.reason if result.n_assessable == 0 else None)
    info = analyzer.model_info
    profile = None if reason else result.site_profile
    record = SeriesRecord(
        series_hash=spooled.series_hash, study_hash=spooled.study_hash, ae_title=spooled.ae_title,
        n_instances=len(files), first_received_at=spooled.first_received_at(), last_received_at=spooled.received_at,
        analysed_at=clock(), verdict=SKIPPED if reason else result.verdict,
        probability=None if reason else result.probability, threshold=None if result is None else result.threshold,
        n_slices=0 if result is None else result.n_slices, n_assessable=0 if result is None else result.n_assessable,
        skipped_reason=reason, model_version=info.version,
        label=result.series_label if result is not None else f"series of {len(files)} instances",
        site_profile_id=None if profile is None else profile.id,
        site_profile_cases=None if profile is None else profile.n_cases,
    )
    for_pacs = None
    if not reason and result.overlay_png is not None and "StudyInstanceUID" in header:
        for_pacs = TriageResult(
            str(header.StudyInstanceUID), str(header.get("StudyDate", "") or ""),
            str(header.get("StudyTime", "") or ""), accession or "", result.verdict, result.probability,
            result.threshold, info.name, info.version, result.overlay_png, bool(result.heatmap_shows_region),
        )
    assessed = None if reason or result.slice_features is None or not len(result.slice_features) else result
    shown = (None, None) if reason else (result.overlay_png, result.heatmap_shows_region)
    return SeriesOutcome(record, study, *shown, files, for_pacs, assessed)
