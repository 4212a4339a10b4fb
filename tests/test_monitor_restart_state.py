"""What a monitor starting on a store that already holds vitals (a restart, or another instance taking over) knows
of the patients' recent past: on both engines, a GCS drop is measured against the best GCS stored within the
baseline window, not against the first sample the new monitor happens to receive."""

from __future__ import annotations

import json
from pathlib import Path

from monitor.engine import EngineConfig
from monitor.ingest import Message
from monitor.mqtt import vitals_topic
from monitor.payload import Admission
from monitor.ward import Ward
from store import open_database
from store.alerts import open_alerts
from store.database import Database
from store.patients import add_patient
from testsupport.doubles import T0

CONFIG = EngineConfig(hold_s=0, sbp_ceiling=160, stale_after_s=300)
CALM = {"hr": 72, "spo2": 97, "sbp": 125, "dbp": 80, "rr": 15, "temp": 36.8}


def _reading(number: int, ts: float, gcs: int) -> Message:
    payload = json.dumps({"ts": ts, **CALM, "gcs": gcs}).encode()
    return Message(vitals_topic("hemowatch", "p1"), payload, ts, number, 1, 1)


def _started_ward(location: Path | str, now: float) -> Ward:
    ward = Ward(open_database(location), CONFIG, "hemowatch", Admission())
    ward.refresh(now)
    return ward


def test_a_gcs_drop_just_after_a_takeover_is_measured_against_the_stored_baseline(
    store_location: Path | str,
) -> None:
    db = open_database(store_location)
    add_patient(db, "p1", "Ann Smith", T0 - 7200)
    first = _started_ward(store_location, T0)
    first.ingest([_reading(1, T0 - 5000, 15), _reading(2, T0 - 600, 14), _reading(3, T0 - 300, 13)])
    assert not _gcs_drops(db)  # 15 is older than the hour; 13 is one point below the best of the hour (14)

    successor = _started_ward(store_location, T0)  # the first is gone; nothing of its memory is left
    successor.ingest([_reading(4, T0 + 5, 12)])
    assert _gcs_drops(db) == ["GCS dropped 2 points (from 14 to 12)"]


def _gcs_drops(db: Database) -> list[str]:
    return [alert.title for alert in open_alerts(db) if alert.condition == "gcs_drop"]
