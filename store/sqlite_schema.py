"""The embedded store: one SQLite file in WAL mode, its tables declared through sqlite-utils.

Migrations are applied in order and recorded in SQLite's `user_version`, so opening a database is
idempotent and upgrades an older file in place. Add a new function to `MIGRATIONS` (and its counterpart to
`store.postgres_schema`); never edit an old one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import sqlite_utils

from store.database import Cursor, Database, Params


def _v1_initial(db: sqlite_utils.Database) -> None:
    db["patients"].create(
        {"id": str, "name": str, "neuro": int, "monitored": int, "created_at": float},
        pk="id",
        not_null={"name", "neuro", "monitored", "created_at"},
        defaults={"neuro": 1, "monitored": 1},
    )
    db["vitals"].create(
        {
            "id": int, "patient_id": str, "ts": float, "received_at": float,
            "hr": float, "spo2": float, "sbp": float, "dbp": float, "rr": float, "temp": float,
            "gcs": int, "o2": int, "acvpu": str, "news2": int, "news2_components": str,
        },
        pk="id",
        not_null={"patient_id", "ts", "received_at"},
        foreign_keys=[("patient_id", "patients", "id")],
    )
    db["vitals"].create_index(["patient_id", "ts"])
    db["vitals"].create_index(["ts"])
    db["thresholds"].create(
        {"patient_id": str, "vital": str, "low": float, "high": float},
        pk=("patient_id", "vital"),
        foreign_keys=[("patient_id", "patients", "id")],
    )
    db["alerts"].create(
        {
            "id": int, "patient_id": str, "condition": str, "severity": str, "state": str,
            "title": str, "details": str, "news2": int,
            "raised_at": float, "acknowledged_by": int, "acknowledged_at": float, "resolved_at": float,
            "escalation_level": int, "last_escalated_at": float,
        },
        pk="id",
        not_null={"patient_id", "condition", "severity", "state", "title", "raised_at", "escalation_level"},
        defaults={"escalation_level": 0},
        foreign_keys=[("patient_id", "patients", "id")],
    )
    db["alerts"].create_index(["patient_id", "state"])
    db["alert_events"].create(
        {"id": int, "alert_id": int, "at": float, "state": str, "actor": str, "note": str},
        pk="id",
        not_null={"alert_id", "at", "state"},
        foreign_keys=[("alert_id", "alerts", "id")],
    )
    db["alert_events"].create_index(["alert_id"])
    db["outbox"].create(
        {
            "id": int, "alert_id": int, "kind": str, "payload": str, "created_at": float,
            "attempts": int, "next_attempt_at": float, "delivered_at": float, "failed_at": float,
            "last_error": str,
        },
        pk="id",
        not_null={"alert_id", "kind", "payload", "created_at", "attempts", "next_attempt_at"},
        defaults={"attempts": 0},
        foreign_keys=[("alert_id", "alerts", "id")],
    )
    db["outbox"].create_index(["delivered_at", "failed_at", "next_attempt_at"])
    db["users"].create(
        {
            "telegram_id": int, "role": str, "display_name": str, "chat_id": int,
            "joined_at": float, "revoked_at": float, "blocked_at": float,
        },
        pk="telegram_id",
        not_null={"role", "chat_id", "joined_at"},
    )
    db["invitations"].create(
        {
            "code": str, "role": str, "patient_id": str, "created_by": int, "created_at": float,
            "expires_at": float, "used_by": int, "used_at": float,
        },
        pk="code",
        not_null={"role", "created_by", "created_at", "expires_at"},
    )
    db["patient_members"].create(
        {"patient_id": str, "telegram_id": int, "role": str, "added_at": float},
        pk=("patient_id", "telegram_id"),
        not_null={"role", "added_at"},
        foreign_keys=[("patient_id", "patients", "id")],
    )
    db["patient_members"].create_index(["telegram_id"])
    db["mutes"].create(
        {"patient_id": str, "telegram_id": int, "until": float},
        pk=("patient_id", "telegram_id"),
        not_null={"until"},
    )
    db["deliveries"].create(
        {"outbox_id": int, "chat_id": int, "message_id": int, "sent_at": float, "status": str},
        pk=("outbox_id", "chat_id"),
        not_null={"sent_at", "status"},
    )
    db["scans"].create(
        {
            "id": int, "sha256": str, "verdict": str, "probability": float, "threshold": float,
            "model_version": str, "telegram_id": int, "at": float, "n_slices": int, "n_assessable": int,
        },
        pk="id",
        not_null={"sha256", "verdict", "model_version", "telegram_id", "at"},
    )


def _v2_delivery_text(db: sqlite_utils.Database) -> None:
    """Keep each delivered alert message's text, so it can be edited when someone acknowledges."""
    db["deliveries"].add_column("text", str)


def _v3_unique_samples(db: sqlite_utils.Database) -> None:
    """One row per patient and measurement time, so a message delivered twice is stored once; older files
    may hold such twins, of which the first stored stays."""
    db.execute("delete from vitals where id not in (select min(id) from vitals group by patient_id, ts)")
    db.execute("drop index idx_vitals_patient_id_ts")
    db["vitals"].create_index(["patient_id", "ts"], unique=True)


_READING = (
    "patient_id, device, coalesce(device_ts, ts), coalesce(hr, -1), coalesce(spo2, -1), coalesce(sbp, -1), "
    "coalesce(dbp, -1), coalesce(rr, -1), coalesce(temp, -1), coalesce(gcs, -1), coalesce(o2, -1), "
    "coalesce(acvpu, '')"
)


def _v4_readings_per_device(db: sqlite_utils.Database) -> None:
    """Samples name the device that measured them, and keep the device's own stamp (`device_ts`) when its clock
    was judged wrong and `ts` is the arrival time. A resend repeats patient, device, stamp and every value;
    two devices, or two different readings, in the same second are two rows. Stored rows stay as they are."""
    db["vitals"].add_column("device", str, not_null_default="")
    db["vitals"].add_column("device_ts", float)
    db.execute("drop index idx_vitals_patient_id_ts")
    db.execute(f"create unique index idx_vitals_reading on vitals ({_READING})")
    db["vitals"].create_index(["patient_id", "ts"])


def _v5_outbox_by_alert(db: sqlite_utils.Database) -> None:
    """Each notice is scheduled on its own and waits only for earlier notices of its own alert: find those fast."""
    db["outbox"].create_index(["alert_id", "id"])


def _v6_dicom_studies(db: sqlite_utils.Database) -> None:
    """Head CTs pushed to the DICOM node: one audit row per study (keyed by a hash of its Study Instance UID)
    and per series, and who is on call for their alerts. No name, patient id or birth date has a column."""
    db["dicom_studies"].create(
        {
            "study_hash": str, "accession": str, "study_time": str, "ae_title": str,
            "first_received_at": float, "last_received_at": float, "analysed_at": float,
            "verdict": str, "probability": float, "threshold": float, "model_version": str,
            "series_hash": str, "reason": str, "alert_id": int, "overlay_png": bytes,
        },
        pk="study_hash",
        not_null={"ae_title", "first_received_at", "last_received_at", "analysed_at", "verdict"},
    )
    db["dicom_studies"].create_index(["analysed_at"])
    db["dicom_series"].create(
        {
            "series_hash": str, "study_hash": str, "ae_title": str, "n_instances": int,
            "first_received_at": float, "last_received_at": float, "analysed_at": float,
            "verdict": str, "probability": float, "threshold": float, "n_slices": int, "n_assessable": int,
            "skipped_reason": str, "model_version": str, "label": str,
        },
        pk="series_hash",
        not_null={"study_hash", "ae_title", "n_instances", "first_received_at", "last_received_at",
                  "analysed_at", "verdict"},
    )
    db["dicom_series"].create_index(["study_hash"])
    db["on_call"].create({"telegram_id": int, "since": float}, pk="telegram_id", not_null={"since"})


def _v7_event_actors(db: sqlite_utils.Database) -> None:
    """Alert events keep the name and role of who acted, so every copy of an alert can say who has seen it and
    who acknowledged it clinically. A caregiver's press no longer acknowledges (it stopped escalation): ones
    stored before become `seen` events, and the alerts they had taken escalate again until a clinician acts."""
    db["alert_events"].add_column("actor_name", str)
    db["alert_events"].add_column("actor_role", str)
    taken = db.execute(
        "select a.id, a.acknowledged_by from alerts a join patient_members m "
        "on m.patient_id = a.patient_id and m.telegram_id = a.acknowledged_by where m.role = 'caregiver'"
    ).fetchall()
    for alert_id, telegram_id in taken:
        db.execute(
            "update alert_events set state = 'seen', actor_role = 'caregiver' "
            "where alert_id = ? and state = 'acknowledged' and actor = ?",
            [alert_id, str(telegram_id)],
        )
        db.execute(
            "update alerts set acknowledged_by = null, acknowledged_at = null, "
            "state = case state when 'acknowledged' then 'notified' else state end where id = ?",
            [alert_id],
        )
def _v8_site_profiles(db: sqlite_utils.Database) -> None:
    """Site commissioning: the profiles fitted on the hospital's own cases, which one is active and every change
    of it, and the casebook of confirmed cases (pooled features and labels; never pixels or identifiers)."""
    db["site_profiles"].create(
        {
            "id": int, "created_at": float, "created_by": str, "model_sha256": str, "model_version": str,
            "profile": str, "figures": str, "case_ids": str, "n_cases": int, "n_patients": int,
            "n_bleeding": int, "sensitivity_target": float,
        },
        pk="id",
        not_null={"created_at", "created_by", "model_sha256", "profile", "figures", "case_ids", "n_cases"},
    )
    db["site_changes"].create(
        {"id": int, "at": float, "by": str, "action": str, "profile_id": int, "note": str},
        pk="id",
        not_null={"at", "by", "action"},
        foreign_keys=[("profile_id", "site_profiles", "id")],
    )
    db["site_cases"].create(
        {
            "id": int, "created_at": float, "source": str, "model_sha256": str, "group_key": str, "label": int,
            "features": bytes, "shipped": bytes, "verdict": str, "probability": float, "profile_id": int,
            "scan_ref": str, "read_by": int, "read_at": float,
        },
        pk="id",
        not_null={"created_at", "source", "model_sha256", "group_key", "features", "shipped"},
    )
    db["site_cases"].create_index(["scan_ref"])


def _v9_site_in_service(db: sqlite_utils.Database) -> None:
    """The service tells the admins of every change of the active profile, also those made from the command line
    (`announced_at`; the changes made before are taken as known), and a scanner's series keeps the site profile
    its verdict came from."""
    db["site_changes"].add_column("announced_at", float)
    db.execute("update site_changes set announced_at = at")
    db["dicom_series"].add_column("site_profile_id", int)
    db["dicom_series"].add_column("site_profile_cases", int)


def _v10_ingest_watch(db: sqlite_utils.Database) -> None:
    """The instance that ingests vitals says so every few seconds, and whether it reaches the broker, so any
    instance can tell the admins when ingest stops; and the notices about it, so they are told once."""
    db["ingest_heartbeat"].create(
        {"instance": str, "at": float, "broker_down_since": float, "broker_error": str},
        pk="instance",
        not_null={"at"},
    )
    db["service_notices"].create(
        {"id": int, "event": str, "since": float, "reason": str, "told_at": float, "ended_at": float},
        pk="id",
        not_null={"event", "since", "told_at"},
    )


def _v11_outbox_claims(db: sqlite_utils.Database) -> None:
    """A notice being delivered is claimed in a column of its own, apart from its retry schedule, so the claims left
    by a process that died can be released at the next start without touching the schedule."""
    db["outbox"].add_column("claimed_until", float)


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [
    _v1_initial, _v2_delivery_text, _v3_unique_samples, _v4_readings_per_device, _v5_outbox_by_alert,
    _v6_dicom_studies, _v7_event_actors, _v8_site_profiles, _v9_site_in_service, _v10_ingest_watch,
    _v11_outbox_claims,
]
SCHEMA_VERSION = len(MIGRATIONS)


Synchronous = Literal["FULL", "NORMAL"]


class SqliteDatabase(Database):
    """The embedded store: one SQLite file in WAL mode, its schema kept by sqlite-utils."""

    engine = "sqlite"

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.sqlite = sqlite_utils.Database(conn)

    def execute(self, sql: str, params: Params = ()) -> Cursor:
        return self.conn.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        self.conn.executemany(sql, rows)

    def query(self, sql: str, params: Params = ()) -> Iterator[dict[str, Any]]:
        return self.sqlite.query(sql, params)

    @contextmanager
    def atomic(self) -> Iterator[None]:
        if self.conn.in_transaction:
            yield
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.rollback()
            raise
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()


def connect(path: Path, synchronous: Synchronous = "FULL", busy_timeout_s: float = 30.0) -> SqliteDatabase:
    """Open (creating or upgrading) the SQLite file at `path` in WAL mode.

    `synchronous`: FULL syncs the write-ahead log at every commit, so a commit survives a power cut or an OS
    crash; NORMAL syncs it only at checkpoints, so such a cut can roll back the last commits (a process crash
    cannot). `busy_timeout_s`: how long a write waits for another connection's write to end before it fails
    with "database is locked" (SQLite cannot interrupt that wait). The connection may be used from one thread
    at a time, not necessarily the one that opened it, so callers can hand it to a worker thread.
    """
    if synchronous not in ("FULL", "NORMAL"):
        raise ValueError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
    conn = sqlite3.connect(str(path), check_same_thread=False, timeout=busy_timeout_s)
    db = sqlite_utils.Database(conn)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.execute("PRAGMA foreign_keys=ON")
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise RuntimeError(f"{path} has schema version {version}, newer than this HemoWatch ({SCHEMA_VERSION})")
    for number, migrate in enumerate(MIGRATIONS[version:], start=version + 1):
        with conn:
            migrate(db)
            db.execute(f"PRAGMA user_version = {number}")
    conn.isolation_level = None  # a statement outside `atomic` commits on its own, as on PostgreSQL
    return SqliteDatabase(conn)
