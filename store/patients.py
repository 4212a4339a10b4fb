"""Monitored patients and their per-vital alert thresholds.

A threshold row overrides the standard limit of one vital (`core.vitals.VITALS`); a missing side (None) keeps
the standard one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import sqlite_utils

from core.vitals import Threshold, check_limits
from store.schema import atomic

PATIENT_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")  # safe inside an MQTT topic and a Telegram command


@dataclass(frozen=True, slots=True)
class Patient:
    id: str
    name: str
    neuro: bool  # haemorrhage patient: the GCS-drop and systolic-ceiling rules apply
    monitored: bool  # vitals expected: the "sensor offline" rule applies
    created_at: float


def _patient(row: dict) -> Patient:
    return Patient(row["id"], row["name"], bool(row["neuro"]), bool(row["monitored"]), row["created_at"])


def add_patient(
    db: sqlite_utils.Database, patient_id: str, name: str, now: float, neuro: bool = True
) -> Patient:
    """Register a patient so the monitor accepts their vitals; ValueError when the id is taken or not a
    valid `PATIENT_ID`."""
    if not PATIENT_ID.fullmatch(patient_id):
        raise ValueError(
            f"{patient_id!r} cannot be a patient id: use 1-32 letters, digits, '-' or '_' (it is part of an MQTT topic)"
        )
    if get_patient(db, patient_id) is not None:
        raise ValueError(f"patient {patient_id} already exists")
    with atomic(db):
        db.execute(
            "insert into patients (id, name, neuro, monitored, created_at) values (?, ?, ?, 1, ?)",
            [patient_id, name or patient_id, int(neuro), now],
        )
    return Patient(patient_id, name or patient_id, neuro, True, now)


def get_patient(db: sqlite_utils.Database, patient_id: str) -> Patient | None:
    rows = list(db.query("select * from patients where id = ?", [patient_id]))
    return _patient(rows[0]) if rows else None


def list_patients(db: sqlite_utils.Database, ids: list[str] | None = None) -> list[Patient]:
    """Every patient, or those with the given ids, ordered by id."""
    columns = "select id, name, neuro, monitored, created_at from patients"
    if ids is None:
        rows = db.execute(f"{columns} order by id").fetchall()
    else:
        marks = ",".join("?" * len(ids))
        rows = db.execute(f"{columns} where id in ({marks}) order by id", list(ids)).fetchall()
    return [Patient(id_, name, bool(neuro), bool(monitored), created_at) for id_, name, neuro, monitored, created_at in rows]


def patients_version(db: sqlite_utils.Database) -> tuple[object, ...]:
    """A cheap value that changes when a patient is added or removed or their flags change, so a reader
    can skip reloading every patient when nothing did."""
    return tuple(db.execute(
        "select count(*), max(created_at), group_concat(id || neuro || monitored, ',') from patients"
    ).fetchone())


def set_threshold(
    db: sqlite_utils.Database, patient_id: str, vital: str, low: float | None, high: float | None
) -> Threshold:
    """Override a patient's limits for one vital (both None: back to the standard ones). The monitor picks it up
    within seconds. LimitError (see `core.vitals.check_limits`) says what is wrong with limits it refuses."""
    check_limits(vital, low, high)
    with atomic(db):
        if low is None and high is None:
            db.execute("delete from thresholds where patient_id = ? and vital = ?", [patient_id, vital])
        else:
            db.execute(
                "insert or replace into thresholds (patient_id, vital, low, high) values (?, ?, ?, ?)",
                [patient_id, vital, low, high],
            )
    return Threshold(vital, low, high)


def get_thresholds(db: sqlite_utils.Database, patient_id: str) -> dict[str, Threshold]:
    """The patient's overrides by vital (vitals without a row use the defaults)."""
    rows = db.query("select * from thresholds where patient_id = ?", [patient_id])
    return {row["vital"]: Threshold(row["vital"], row["low"], row["high"]) for row in rows}


def thresholds_by_patient(db: sqlite_utils.Database) -> dict[str, dict[str, Threshold]]:
    """Every override in one read, for the monitor's periodic refresh."""
    overrides: dict[str, dict[str, Threshold]] = {}
    for row in db.query("select * from thresholds"):
        overrides.setdefault(row["patient_id"], {})[row["vital"]] = Threshold(row["vital"], row["low"], row["high"])
    return overrides
