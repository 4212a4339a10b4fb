"""Head CTs pushed to the DICOM node: the audit trail per series and per study, and the doctors on call.

A study is keyed by a hash of its Study Instance UID, a series by a hash of its Series Instance UID; the only
identifier kept is the accession number (when the node is set to show it). Recording a series, choosing the
study's verdict from its best series and raising the study's alert happen in one transaction, so a series is
recorded, and its study alerted, exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlite_utils

from core.notifications import STUDY_CONDITION, Severity
from store.alerts import raise_alert
from store.schema import atomic
from store.site_profiles import STUDY_PREFIX

STUDY_PATIENT_ID = "ct-studies"  # the alerts table needs a patient: study alerts hang on this unmonitored one
STUDY_ALERT_TITLE = "Haemorrhage suspected on a head CT"
SKIPPED = "skipped"  # not a head CT (by the header or the gate), or not axial


@dataclass(frozen=True, slots=True)
class SeriesRecord:
    """What the node learnt about one received series: derived values and times only."""

    series_hash: str
    study_hash: str
    ae_title: str  # the calling AE title that sent it
    n_instances: int
    first_received_at: float
    last_received_at: float
    analysed_at: float
    verdict: str  # "hemorrhage", "no_hemorrhage", "not_assessable" or "skipped"
    probability: float | None
    threshold: float | None
    n_slices: int
    n_assessable: int
    skipped_reason: str | None
    model_version: str
    label: str  # e.g. "series 2 (CT, 28 slices)"
    site_profile_id: int | None = None  # the site profile its verdict came from (None: the shipped model's)
    site_profile_cases: int | None = None  # how many cases that profile was fitted on


@dataclass(frozen=True, slots=True)
class StudyHeader:
    accession: str | None  # None when the node does not show it (DICOM_NOTIFY_FIELDS=none)
    study_time: str | None  # "2026-11-26 14:02" from StudyDate and StudyTime


@dataclass(frozen=True, slots=True)
class StudyAudit:
    study_hash: str
    accession: str | None
    study_time: str | None
    ae_title: str
    first_received_at: float
    last_received_at: float
    analysed_at: float
    verdict: str
    probability: float | None
    threshold: float | None
    model_version: str | None
    reason: str | None
    alert_id: int | None
    notified_at: float | None
    acknowledged_at: float | None
    acknowledged_by: str | None  # the display name of who acknowledged its alert
    in_casebook: bool = False  # kept for a doctor's read: it had slices to assess
    read_label: int | None = None  # the doctor's read: 1 bleed confirmed, 0 no bleed, None not read
    read_by: str | None = None  # the display name of who gave the read


def series_analysed_at(db: sqlite_utils.Database, series_hash: str) -> float | None:
    """When the series was last recorded, or None when it never was."""
    row = db.execute("select analysed_at from dicom_series where series_hash = ?", [series_hash]).fetchone()
    return row[0] if row else None


def record_series(
    db: sqlite_utils.Database, series: SeriesRecord, header: StudyHeader, overlay_png: bytes | None, now: float,
    heatmap_shows_region: bool | None = None,
) -> int | None:
    """Store the series' result, re-judge its study from its best series (the assessed series with the most
    assessable slices) and, the first time the study is flagged, raise its alert. Returns that alert's id.
    `heatmap_shows_region` (whether a region of the series' heat-map stands out) goes into that alert: a study is
    first flagged by the series just recorded, whose heat-map the alert shows."""
    with atomic(db):
        db["dicom_series"].upsert(_columns(series), pk="series_hash")
        best = db.execute(
            "select series_hash, verdict, probability, threshold, model_version, site_profile_id, "
            "site_profile_cases from dicom_series "
            "where study_hash = ? and verdict in ('hemorrhage', 'no_hemorrhage') "
            "order by n_assessable desc, probability desc limit 1",
            [series.study_hash],
        ).fetchone()
        window = db.execute(
            "select min(first_received_at), max(last_received_at), group_concat(distinct ae_title) "
            "from dicom_series where study_hash = ?", [series.study_hash],
        ).fetchone()
        existing = db.execute(
            "select alert_id, overlay_png, series_hash from dicom_studies where study_hash = ?", [series.study_hash]
        ).fetchone()
        alert_id, overlay, chosen = existing if existing else (None, None, None)
        if best is not None:
            best_hash, verdict, probability, threshold, model_version, profile_id, profile_cases = best
            reason = None
            overlay = overlay_png if best_hash == series.series_hash else overlay
        else:  # nothing assessable yet: the study carries this series' reason
            best_hash, verdict, probability, threshold = chosen, series.verdict, None, None
            model_version, reason = series.model_version, series.skipped_reason
            profile_id, profile_cases = None, None
        study = {
            "study_hash": series.study_hash, "accession": header.accession, "study_time": header.study_time,
            "ae_title": window[2], "first_received_at": window[0], "last_received_at": window[1],
            "analysed_at": now, "verdict": verdict, "probability": probability, "threshold": threshold,
            "model_version": model_version, "series_hash": best_hash, "reason": reason, "overlay_png": overlay,
            "alert_id": alert_id,
        }
        raised = None
        if verdict == "hemorrhage" and alert_id is None:
            shown = heatmap_shows_region if best_hash == series.series_hash else None
            raised = study["alert_id"] = _raise_study_alert(db, study, (profile_id, profile_cases), now, shown)
        db["dicom_studies"].upsert(study, pk="study_hash")
    return raised


def _raise_study_alert(
    db: sqlite_utils.Database, study: dict, profile: tuple[int | None, int | None], now: float,
    shows_region: bool | None,
) -> int:
    db.execute(
        "insert or ignore into patients (id, name, neuro, monitored, created_at) values (?, ?, 0, 0, ?)",
        [STUDY_PATIENT_ID, "Head CT studies", now],
    )
    values = {
        "study": study["study_hash"], "accession": study["accession"], "study_time": study["study_time"],
        "ae_title": study["ae_title"], "probability": study["probability"], "threshold": study["threshold"],
        "model_version": study["model_version"], "site_profile": profile[0], "site_profile_cases": profile[1],
        "since_last_slice_s": round(max(0.0, now - study["last_received_at"]), 1),
        "heatmap_shows_region": shows_region,
    }
    return raise_alert(db, STUDY_PATIENT_ID, STUDY_CONDITION, Severity.URGENT, STUDY_ALERT_TITLE, now, values=values)


def _columns(series: SeriesRecord) -> dict:
    return {name: getattr(series, name) for name in SeriesRecord.__slots__}


def study_series(db: sqlite_utils.Database, study_hash: str) -> str | None:
    """The series the study's verdict comes from (None: none yet)."""
    row = db.execute("select series_hash from dicom_studies where study_hash = ?", [study_hash]).fetchone()
    return row[0] if row else None


def study_overlay(db: sqlite_utils.Database, study_hash: str) -> bytes | None:
    """The heat-map picture of the study's most suspicious slice."""
    row = db.execute("select overlay_png from dicom_studies where study_hash = ?", [study_hash]).fetchone()
    return row[0] if row else None


def recent_studies(db: sqlite_utils.Database, limit: int = 20) -> list[StudyAudit]:
    """The last `limit` studies analysed, newest first, with when their alert was delivered and acknowledged, and
    the doctor's read of each."""
    rows = db.query(
        "select s.*, a.acknowledged_at, coalesce(u.display_name, a.acknowledged_by) as acknowledged_name, "
        "(select min(e.at) from alert_events e where e.alert_id = s.alert_id and e.state = 'notified') "
        "as notified_at, c.id as case_id, c.label as read_label, coalesce(r.display_name, c.read_by) as read_name "
        "from dicom_studies s left join alerts a on a.id = s.alert_id "
        "left join users u on u.telegram_id = a.acknowledged_by "
        "left join site_cases c on c.scan_ref = ? || s.study_hash and c.source = 'dicom' "
        "left join users r on r.telegram_id = c.read_by order by s.analysed_at desc limit ?",
        [STUDY_PREFIX, limit],
    )
    return [
        StudyAudit(
            row["study_hash"], row["accession"], row["study_time"], row["ae_title"], row["first_received_at"],
            row["last_received_at"], row["analysed_at"], row["verdict"], row["probability"], row["threshold"],
            row["model_version"], row["reason"], row["alert_id"], row["notified_at"], row["acknowledged_at"],
            None if row["acknowledged_name"] is None else str(row["acknowledged_name"]),
            row["case_id"] is not None, row["read_label"], None if row["read_name"] is None else str(row["read_name"]),
        )
        for row in rows
    ]


def set_on_call(db: sqlite_utils.Database, telegram_id: int, on: bool, now: float) -> None:
    with atomic(db):
        if on:
            db.execute("insert or ignore into on_call (telegram_id, since) values (?, ?)", [telegram_id, now])
        else:
            db.execute("delete from on_call where telegram_id = ?", [telegram_id])


def on_call(db: sqlite_utils.Database) -> dict[int, float]:
    """Who said they are on call (Telegram id -> since when); the bot decides who of them may still be."""
    return dict(db.execute("select telegram_id, since from on_call order by telegram_id").fetchall())
