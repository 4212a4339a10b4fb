"""Raw vitals samples: batched writes from the monitor, reads for the bot's status and trend charts."""

from __future__ import annotations

import json
from collections.abc import Iterable


from core.vitals import VitalSample
from store.database import Database, atomic

_INSERT = (
    "insert into vitals (patient_id, ts, received_at, hr, spo2, sbp, dbp, rr, temp, gcs, o2, acvpu, "
    "news2, news2_components, device, device_ts) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "on conflict do nothing"
)
# The same reading: patient, device, the device's stamp and every value (null-safe), as the unique index has it. The
# keys looked up come as a list of rows, each value cast to its column's type (which PostgreSQL needs to compare).
_KEY_TYPES = ("text", "text", *["double precision"] * 7, "bigint", "bigint", "text")
_KEY_ROW = "(" + ", ".join(f"cast(? as {kind})" for kind in _KEY_TYPES) + ")"
_VALUES = ("hr", "spo2", "sbp", "dbp", "rr", "temp", "gcs", "o2", "acvpu")
_STORED = (
    "with k (patient_id, device, stamp, hr, spo2, sbp, dbp, rr, temp, gcs, o2, acvpu) as (values {rows}) "
    "select k.* from k where exists (select 1 from vitals v where v.patient_id = k.patient_id "
    "and v.device = k.device and coalesce(v.device_ts, v.ts) = k.stamp "
    + " ".join(f"and v.{column} is not distinct from k.{column}" for column in _VALUES) + ")"
)
LOOKUP_BATCH = 500  # keys per query: well under either engine's limit of parameters

ReadingKey = tuple[object, ...]


def reading_key(s: VitalSample) -> ReadingKey:
    """What a resend repeats: the patient, the device, the device's stamp and every value. Two readings of the
    same second that differ in any of these are two readings."""
    return (
        s.patient_id, s.device, s.stamp, s.hr, s.spo2, s.sbp, s.dbp, s.rr, s.temp, s.gcs,
        None if s.o2 is None else int(s.o2), s.acvpu,
    )


def insert_vitals(db: Database, samples: Iterable[VitalSample]) -> None:
    """Store samples (the caller commits, so a batch lands in one transaction). A sample whose reading key is
    already stored is the same reading delivered again, and is skipped."""
    db.executemany(
        _INSERT,
        [
            (
                s.patient_id, s.ts, s.received_at, s.hr, s.spo2, s.sbp, s.dbp, s.rr, s.temp, s.gcs,
                None if s.o2 is None else int(s.o2), s.acvpu, s.news2,
                None if s.news2_components is None else json.dumps(s.news2_components), s.device, s.device_ts,
            )
            for s in samples
        ],
    )


def stored_samples(db: Database, keys: Iterable[ReadingKey]) -> set[ReadingKey]:
    """Which of these readings (see `reading_key`) are already stored: look-ups in the unique index, a batch of
    keys per query, so a database across the network is asked once per batch rather than once per reading."""
    wanted, found = list(keys), set()
    for start in range(0, len(wanted), LOOKUP_BATCH):
        batch = wanted[start:start + LOOKUP_BATCH]
        rows = db.execute(_STORED.format(rows=", ".join([_KEY_ROW] * len(batch))),
                          [value for key in batch for value in key]).fetchall()
        found.update(tuple(row) for row in rows)
    return found & set(wanted)


def _sample(row: dict) -> VitalSample:
    return VitalSample(
        patient_id=row["patient_id"], ts=row["ts"], received_at=row["received_at"], hr=row["hr"],
        spo2=row["spo2"], sbp=row["sbp"], dbp=row["dbp"], rr=row["rr"], temp=row["temp"], gcs=row["gcs"],
        o2=None if row["o2"] is None else bool(row["o2"]), acvpu=row["acvpu"], news2=row["news2"],
        news2_components=None if row["news2_components"] is None else json.loads(row["news2_components"]),
        device=row["device"], device_ts=row["device_ts"],
    )


def latest_vitals(db: Database, patient_id: str) -> VitalSample | None:
    """The patient's most recent sample by measurement time."""
    rows = list(db.query("select * from vitals where patient_id = ? order by ts desc, id desc limit 1", [patient_id]))
    return _sample(rows[0]) if rows else None


def vitals_between(db: Database, patient_id: str, start_ts: float, end_ts: float) -> list[VitalSample]:
    """The patient's samples measured in [start_ts, end_ts], oldest first (for trend charts)."""
    rows = db.query(
        "select * from vitals where patient_id = ? and ts >= ? and ts <= ? order by ts, id",
        [patient_id, start_ts, end_ts],
    )
    return [_sample(row) for row in rows]


def best_gcs_since(db: Database, since_ts: float) -> dict[str, tuple[float, int]]:
    """Each patient's best GCS measured since `since_ts`, with when it was last measured: (ts, GCS)."""
    rows = db.execute(
        "select v.patient_id, max(v.ts), v.gcs from vitals v join ("
        "  select patient_id, max(gcs) as best from vitals where ts >= ? and gcs is not null group by patient_id"
        ") b on b.patient_id = v.patient_id and v.gcs = b.best where v.ts >= ? group by v.patient_id, v.gcs",
        [since_ts, since_ts],
    ).fetchall()
    return {patient_id: (ts, gcs) for patient_id, ts, gcs in rows}


def prune_vitals(db: Database, before_ts: float) -> int:
    """Delete samples measured before `before_ts`; returns how many went."""
    with atomic(db):
        return db.execute("delete from vitals where ts < ?", [before_ts]).rowcount
