"""Rejected messages in the log, through the monitor's ward on a real SQLite file: a flood writes one line per
reason per minute, with its count, and a count left when the flood stops is written once its minute is over."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from monitor.engine import EngineConfig
from monitor.ingest import Message
from monitor.mqtt import vitals_topic
from monitor.payload import Admission
from monitor.ward import Ward
from store.patients import add_patient
from store import open_database
from testsupport.doubles import T0

FLOOD = 20_000
PER_SECOND = 200  # the flood lasts 100 s


def _message(number: int, patient_id: str, payload: bytes, received_at: float) -> Message:
    return Message(vitals_topic("hemowatch", patient_id), payload, received_at, number % 65535 + 1, 1, 1)


def test_a_flood_of_messages_for_unknown_patients_writes_one_line_per_reason_per_minute(
    database: Path | str, caplog: pytest.LogCaptureFixture
) -> None:
    db = open_database(database)
    add_patient(db, "p1", "Ann Smith", T0 - 3600)
    ward = Ward(db, EngineConfig(hold_s=0, sbp_ceiling=160, stale_after_s=300), "hemowatch", Admission())
    ward.refresh(T0)
    caplog.set_level(logging.WARNING, logger="monitor")
    flood = [_message(i, f"bed-{i % 50}", b'{"hr": 80}', T0 + i / PER_SECOND) for i in range(FLOOD)]
    for start in range(0, FLOOD, 2000):
        ward.ingest(flood[start:start + 2000])
    ward.ingest([_message(0, "p1", b'{"hr": 80, "hr": 25}', T0 + 100)])  # another reason: a line of its own at once
    ward.check_stale(T0 + 110)  # the unknown patients' minute is not over yet
    ward.check_stale(T0 + 120)

    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 4, lines
    assert lines[0] == ("rejected message on hemowatch/patients/bed-0/vitals: no registered patient 'bed-0' "
                        "(unknown patient); payload b'{\"hr\": 80}'")
    assert lines[1] == ("rejected 12000 messages in the last 60 s, the latest on hemowatch/patients/bed-0/vitals: "
                        "no registered patient 'bed-0' (unknown patient); payload b'{\"hr\": 80}'")
    assert lines[2] == ("rejected message on hemowatch/patients/p1/vitals: hr: appears more than once "
                        "(duplicate key); payload b'{\"hr\": 80, \"hr\": 25}'")
    assert lines[3] == ("rejected 7999 messages in the last 60 s, the latest on hemowatch/patients/bed-49/vitals: "
                        "no registered patient 'bed-49' (unknown patient); payload b'{\"hr\": 80}'")
    assert ward.stats.rejected == {"unknown patient": FLOOD, "duplicate key": 1}
