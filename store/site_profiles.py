"""Site profiles, which one is active, and the casebook of confirmed cases they learn from.

A profile is written, and made active, in one transaction: a failed commissioning leaves the active profile as
it was. Every change of the active profile (adopted, rolled back, switched off) is a `site_changes` row, so
`rollback` knows what was active before. Cases keep the pooled features of their assessable slices and the
shipped model's probabilities, never pixels; their patient grouping key is a hash.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from store.database import Database, atomic

_FEATURE_DTYPE = np.float16  # pooled features are small activations: half precision keeps 3 digits


@dataclass(frozen=True)
class StoredProfile:
    id: int
    created_at: float
    created_by: str
    model_sha256: str
    model_version: str
    profile_json: str
    figures: dict[str, Any]
    case_ids: list[int]
    n_cases: int
    n_patients: int
    n_bleeding: int
    sensitivity_target: float


@dataclass(frozen=True)
class StoredCase:
    id: int
    created_at: float
    source: str  # "commission", "scan" (a chat upload) or "dicom" (a study pushed to the node)
    group_key: str
    label: int | None  # None until a doctor reads it
    features: np.ndarray
    shipped: np.ndarray
    verdict: str | None
    probability: float | None
    profile_id: int | None
    read_by: int | None
    read_at: float | None


@dataclass(frozen=True)
class SiteChange:
    at: float
    by: str
    action: str  # "adopted", "rolled back", "off"
    profile_id: int | None
    note: str | None
    id: int
    announced_at: float | None  # when the admins were told of it in Telegram


SCAN_PREFIX = "scan-"
STUDY_PREFIX = "study-"


def scan_ref(audit_id: int) -> str:
    """The casebook's key for a scan sent in the chat: its first audit row."""
    return f"{SCAN_PREFIX}{audit_id}"


def study_ref(study_hash: str) -> str:
    """The casebook's key for a study pushed to the DICOM node: the hash it is known by."""
    return f"{STUDY_PREFIX}{study_hash}"


def group_key(value: str) -> str:
    """The casebook's name for a patient: a hash, so a medical record number given as a group never lands here."""
    return hashlib.sha256(value.encode()).hexdigest()[:16]


def add_case(
    db: Database, *, source: str, model_sha256: str, group: str, label: int | None,
    features: np.ndarray,
    shipped: np.ndarray, now: float, verdict: str | None = None, probability: float | None = None,
    profile_id: int | None = None, scan_ref: str | None = None,
) -> int:
    return db.insert(
        "site_cases",
        _derived(source, model_sha256, group, features, shipped, now, verdict, probability, profile_id)
        | {"label": label, "scan_ref": scan_ref},
    )


def keep_case(
    db: Database, *, scan_ref: str, source: str, model_sha256: str, features: np.ndarray,
    shipped: np.ndarray, now: float, verdict: str, probability: float | None, profile_id: int | None,
) -> int:
    """The case of a scan that may be judged again (a study that grew by a series), grouped by the scan itself:
    a second judgement replaces the first in place, keeping the case's id and any read."""
    derived = _derived(source, model_sha256, scan_ref, features, shipped, now, verdict, probability, profile_id)
    with atomic(db):
        row = db.execute("select id from site_cases where scan_ref = ? and source != 'commission'",
                         [scan_ref]).fetchone()
        if row is None:
            return db.insert("site_cases", derived | {"label": None, "scan_ref": scan_ref})
        db.execute(f"update site_cases set {', '.join(f'{name} = ?' for name in derived)} where id = ?",
                   [*derived.values(), row[0]])
    return row[0]


def _derived(
    source: str, model_sha256: str, group: str, features: np.ndarray, shipped: np.ndarray, now: float,
    verdict: str | None, probability: float | None, profile_id: int | None,
) -> dict[str, Any]:
    """A case's columns that come from the analysis."""
    return {
        "created_at": now, "source": source, "model_sha256": model_sha256, "group_key": group_key(group),
        "features": np.ascontiguousarray(features, dtype=_FEATURE_DTYPE).tobytes(),
        "shipped": np.ascontiguousarray(shipped, dtype=np.float32).tobytes(),
        "verdict": verdict, "probability": probability, "profile_id": profile_id,
    }


def cases_of(db: Database, scan_ref: str) -> list[StoredCase]:
    """The cases of one scan or study (one per assessed series), oldest first."""
    rows = db.query("select * from site_cases where scan_ref = ? and source != 'commission' order by id", [scan_ref])
    return [_case(row) for row in rows]


def record_read(db: Database, scan_ref: str, label: int, telegram_id: int, now: float) -> int:
    """A doctor's read of the cases of one scan; returns how many cases it labelled (0: no such scan)."""
    return db.execute(
        "update site_cases set label = ?, read_by = ?, read_at = ? where scan_ref = ? and source != 'commission'",
        [label, telegram_id, now, scan_ref],
    ).rowcount


def _case(row: dict) -> StoredCase:
    shipped = np.frombuffer(row["shipped"], dtype=np.float32)
    features = np.frombuffer(row["features"], dtype=_FEATURE_DTYPE).reshape(len(shipped), -1)
    return StoredCase(
        row["id"], row["created_at"], row["source"], row["group_key"], row["label"], features.astype(np.float32),
        shipped, row["verdict"], row["probability"], row["profile_id"], row["read_by"], row["read_at"],
    )


def labelled_cases(db: Database, model_sha256: str) -> list[StoredCase]:
    """Every confirmed case whose features came from this model file, oldest first."""
    rows = db.query("select * from site_cases where label is not null and model_sha256 = ? order by id", [model_sha256])
    return [_case(row) for row in rows]


def reads_since(db: Database, since: float) -> list[StoredCase]:
    """Doctors' reads given since `since` (a profile's adoption), oldest first."""
    rows = db.query(
        "select * from site_cases where source != 'commission' and label is not null and read_at >= ? order by id",
        [since])
    return [_case(row) for row in rows]


def _profile(row: dict) -> StoredProfile:
    return StoredProfile(
        row["id"], row["created_at"], row["created_by"], row["model_sha256"], row["model_version"] or "",
        row["profile"], json.loads(row["figures"]), json.loads(row["case_ids"]), row["n_cases"],
        row["n_patients"] or 0, row["n_bleeding"] or 0, row["sensitivity_target"] or 0.0,
    )


def adopt_profile(
    db: Database, *, profile_json: str, figures: dict[str, Any], case_ids: list[int],
    model_sha256: str, model_version: str, n_patients: int, n_bleeding: int, sensitivity_target: float,
    by: str, now: float, note: str | None = None,
) -> int:
    """Store a profile and make it the active one, in one transaction; returns its id."""
    with atomic(db):
        profile_id = db.insert("site_profiles", {
            "created_at": now, "created_by": by, "model_sha256": model_sha256, "model_version": model_version,
            "profile": profile_json, "figures": json.dumps(figures), "case_ids": json.dumps(case_ids),
            "n_cases": len(case_ids), "n_patients": n_patients, "n_bleeding": n_bleeding,
            "sensitivity_target": sensitivity_target,
        })
        _change(db, now, by, "adopted", profile_id, note)
    return profile_id


def _change(db: Database, now: float, by: str, action: str, profile_id: int | None,
            note: str | None = None) -> None:
    db.insert("site_changes", {"at": now, "by": by, "action": action, "profile_id": profile_id, "note": note})


def changes(db: Database) -> list[SiteChange]:
    """Every change of the active profile, oldest first."""
    return [SiteChange(row["at"], row["by"], row["action"], row["profile_id"], row["note"], row["id"],
                       row["announced_at"])
            for row in db.query("select * from site_changes order by id")]


def mark_announced(db: Database, change_id: int, now: float) -> None:
    db.execute("update site_changes set announced_at = ? where id = ?", [now, change_id])


def active_profile(db: Database) -> StoredProfile | None:
    """The profile in use: the one named by the latest change (None: none, or switched off)."""
    row = db.execute("select profile_id from site_changes order by id desc limit 1").fetchone()
    return None if row is None or row[0] is None else get_profile(db, row[0])


def get_profile(db: Database, profile_id: int) -> StoredProfile | None:
    rows = list(db.query("select * from site_profiles where id = ?", [profile_id]))
    return _profile(rows[0]) if rows else None


def profiles(db: Database) -> list[StoredProfile]:
    return [_profile(row) for row in db.query("select * from site_profiles order by id")]


def switch_off(db: Database, by: str, now: float) -> bool:
    """Stop using any profile; False when none was in use."""
    with atomic(db):
        if active_profile(db) is None:
            return False
        _change(db, now, by, "off", None)
    return True


def roll_back(db: Database, by: str, now: float) -> StoredProfile | None | bool:
    """Make active again what was active before the current state; the profile now in use (None: the shipped
    model), or False when there is nothing to go back to."""
    with atomic(db):
        history = changes(db)
        if len(history) < 1:
            return False
        states = [change.profile_id for change in history]
        current = states[-1]
        earlier = [state for state in states[:-1] if state != current]
        if not earlier and current is None:
            return False
        previous = earlier[-1] if earlier else None
        _change(db, now, by, "rolled back", previous)
    return None if previous is None else get_profile(db, previous)
