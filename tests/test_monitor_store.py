"""The monitor's store functions on a real SQLite file: patients, thresholds, vitals, alert lifecycle, outbox."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import sqlite_utils

from core.notifications import NoticeKind, Severity
from core.roles import Role
from core.vitals import LimitError, Threshold
from store.database import Database
from store.alerts import (
    AlertState,
    acknowledge_alert,
    alert_events,
    escalate_overdue,
    get_alert,
    note_seen,
    notice_delivered,
    open_alerts,
    raise_alert,
    resolve_alert,
    responses,
)
from store.outbox import (
    claim_notice,
    defer_notice,
    due_notices,
    fail_notice,
    next_due_at,
    pending_notices,
    release_claims,
)
from store.patients import add_patient, get_patient, get_thresholds, list_patients, set_threshold
from store import open_database
from store.sqlite_schema import MIGRATIONS
from store.vitals import (
    VitalSample,
    insert_vitals,
    latest_vitals,
    prune_vitals,
    reading_key,
    stored_samples,
    vitals_between,
)

T0 = 1_700_000_000.0


@pytest.fixture
def db(store_location: Path | str) -> Database:
    database = open_database(store_location)
    add_patient(database, "p1", "Ann Smith", T0)
    return database


def _urgent(db: Database, now: float = T0) -> int:
    return raise_alert(db, "p1", "spo2_low", Severity.URGENT, "SpO2 low (below 90%)", now, {"spo2": 86})


def test_patients_are_registered_once_with_safe_ids(db: Database) -> None:
    add_patient(db, "p2", "", T0 + 1, neuro=False)
    assert get_patient(db, "p2").name == "p2" and not get_patient(db, "p2").neuro
    assert [p.id for p in list_patients(db)] == ["p1", "p2"]
    assert [p.id for p in list_patients(db, ["p2", "nobody"])] == ["p2"]
    assert get_patient(db, "nobody") is None
    with pytest.raises(ValueError, match="already exists"):
        add_patient(db, "p1", "Again", T0)
    for bad_id in ("ward/3", "bed+", "#", "", "bed 3", "x" * 33):
        with pytest.raises(ValueError, match="MQTT topic"):
            add_patient(db, bad_id, "Bad", T0)


def test_thresholds_are_set_replaced_and_cleared(db: Database) -> None:
    set_threshold(db, "p1", "spo2", 85, None)
    set_threshold(db, "p1", "hr", 45, 120)
    set_threshold(db, "p1", "hr", 50, 110)
    assert get_thresholds(db, "p1") == {"spo2": Threshold("spo2", 85, None), "hr": Threshold("hr", 50, 110)}
    set_threshold(db, "p1", "spo2", None, None)
    assert set(get_thresholds(db, "p1")) == {"hr"}
    with pytest.raises(LimitError, match="no alert limits for 'mood'"):
        set_threshold(db, "p1", "mood", 1, 2)
    with pytest.raises(LimitError, match="below the high"):
        set_threshold(db, "p1", "hr", 120, 100)


@pytest.mark.parametrize(
    ("vital", "low", "high", "refusal"),
    [
        ("hr", None, math.inf, r"Heart rate limits must be from 20 to 300/min; inf is not\."),
        ("spo2", 101, None, r"SpO2 limits must be from 40 to 100%; 101 is not\."),
        ("temp", math.nan, 38, r"Temperature limits must be from 25 to 45 °C; nan is not\."),
        ("rr", -1, None, "from 0 to 80/min"),
        ("hr", 150, None, r"Heart rate: the low limit \(150\) must be below the high one \(130, the standard one\)\."),
        ("sbp", None, 80, r"the low limit \(90, the standard one\) must be below the high one \(80\)"),
        ("dbp", 60, 60, r"the low limit \(60\) must be below the high one \(60\)"),
    ],
)
def test_thresholds_a_patient_cannot_have_are_refused(
    db: Database, vital: str, low: float | None, high: float | None, refusal: str
) -> None:
    """A limit beyond what a patient can show never alerts; a low limit at or above the high one, its own or the
    standard one, alerts on every reading."""
    with pytest.raises(LimitError, match=refusal):
        set_threshold(db, "p1", vital, low, high)
    assert get_thresholds(db, "p1") == {}


def test_the_edges_of_a_vitals_range_are_allowed_limits(db: Database) -> None:
    set_threshold(db, "p1", "spo2", 40, 100)
    set_threshold(db, "p1", "hr", 131, 300)  # above the standard high limit, with a high limit of its own
    assert get_thresholds(db, "p1") == {"spo2": Threshold("spo2", 40, 100), "hr": Threshold("hr", 131, 300)}


def test_vitals_round_trip_latest_trend_and_retention(db: Database) -> None:
    samples = [
        VitalSample("p1", T0 + i * 60, T0 + i * 60 + 1, hr=70 + i, spo2=97, o2=i == 2, acvpu="A") for i in range(4)
    ]
    scored = VitalSample("p1", T0 + 300, T0 + 301, hr=80, news2=1, news2_components={"hr": 0, "temp": 1})
    with db.atomic():
        insert_vitals(db, [*samples, scored])
    assert latest_vitals(db, "p1") == scored
    trend = vitals_between(db, "p1", T0 + 60, T0 + 180)
    assert [s.hr for s in trend] == [71, 72, 73] and trend[1].o2 is True and trend[0].o2 is False
    assert latest_vitals(db, "nobody") is None
    assert prune_vitals(db, T0 + 120) == 2
    assert [s.ts for s in vitals_between(db, "p1", 0, T0 + 1000)] == [T0 + 120, T0 + 180, T0 + 300]


def _older_file(path: Path, version: int, rows: list[tuple[float, float, float]]) -> None:
    """A database file as HemoWatch at schema `version` left it, with (ts, received_at, hr) samples of p1."""
    older = sqlite_utils.Database(path)
    for number, migrate in enumerate(MIGRATIONS[:version], start=1):
        migrate(older)
        older.execute(f"PRAGMA user_version = {number}")
    with older.conn:
        older.execute("insert into patients (id, name, created_at) values ('p1', 'Ann Smith', ?)", [T0])
        older.conn.executemany("insert into vitals (patient_id, ts, received_at, hr) values ('p1', ?, ?, ?)", rows)
    older.close()


def test_an_older_file_loses_its_twins_on_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "older.db"
    _older_file(path, 2, [(T0, T0 + 1, 70), (T0, T0 + 2, 70)])  # written before samples were unique
    db = open_database(path)
    assert [(s.ts, s.received_at, s.device) for s in vitals_between(db, "p1", 0, T0 + 60)] == [(T0, T0 + 1, "")]
    resend = VitalSample("p1", T0, T0 + 3, hr=70)
    assert stored_samples(db, [reading_key(resend)]) == {reading_key(resend)}


def test_commits_are_synced_to_disk_unless_normal_is_asked_for(tmp_path: Path) -> None:
    pragma = lambda db: db.execute("PRAGMA synchronous").fetchone()[0]  # noqa: E731
    assert pragma(open_database(tmp_path / "a.db")) == 2  # FULL
    assert pragma(open_database(tmp_path / "b.db", "NORMAL")) == 1
    with pytest.raises(ValueError, match="FULL or NORMAL"):
        open_database(tmp_path / "c.db", "OFF")


def test_a_resend_is_stored_once_and_different_readings_of_one_second_are_all_kept(tmp_path: Path) -> None:
    path = tmp_path / "older.db"
    _older_file(path, 3, [(T0, T0 + 1, 70)])  # written when one second held one sample per patient
    db = open_database(path)
    readings = [
        VitalSample("p1", T0, T0 + 2, hr=70),  # the stored one again
        VitalSample("p1", T0, T0 + 2, spo2=84),  # another reading of the same second
        VitalSample("p1", T0, T0 + 2, hr=70, device="oximeter"),  # the same values from another device
        VitalSample("p1", T0 + 2, T0 + 2, hr=70, device_ts=T0 + 290),  # stamped ahead: kept with arrival time
    ]
    keys = [reading_key(sample) for sample in readings]
    assert stored_samples(db, keys) == {keys[0]}
    # Resent later, when its stamp is no longer ahead, it is still the same reading.
    assert reading_key(VitalSample("p1", T0 + 290, T0 + 295, hr=70)) == keys[3]
    with db.atomic():
        insert_vitals(db, readings)
        insert_vitals(db, readings)  # delivered again
    stored = [(s.ts, s.hr, s.spo2, s.device, s.device_ts) for s in vitals_between(db, "p1", 0, T0 + 300)]
    assert stored == [
        (T0, 70, None, "", None), (T0, None, 84, "", None), (T0, 70, None, "oximeter", None),
        (T0 + 2, 70, None, "", T0 + 290),
    ]


def test_lifecycle_raised_notified_acknowledged_resolved_is_stored(db: Database) -> None:
    alert_id = _urgent(db)
    (pending,) = pending_notices(db)
    assert pending.notice.kind is NoticeKind.RAISED and pending.notice.patient_name == "Ann Smith"
    assert pending.notice.values == {"spo2": 86} and pending.attempts == 0
    notice_delivered(db, pending.notice.outbox_id, T0 + 1)
    assert get_alert(db, alert_id).state is AlertState.NOTIFIED
    assert acknowledge_alert(db, alert_id, 4242, T0 + 2) is True
    assert acknowledge_alert(db, alert_id, 4343, T0 + 3) is False  # already taken
    acknowledged = get_alert(db, alert_id)
    assert (acknowledged.state, acknowledged.acknowledged_by) == (AlertState.ACKNOWLEDGED, 4242)
    assert [a.id for a in open_alerts(db, "p1")] == [alert_id]
    assert resolve_alert(db, alert_id, T0 + 4) is True
    assert resolve_alert(db, alert_id, T0 + 5) is False
    assert acknowledge_alert(db, alert_id, 4242, T0 + 6) is False
    assert open_alerts(db) == []
    history = [(e.state, e.at, e.actor) for e in alert_events(db, alert_id)]
    assert history == [
        ("raised", T0, None), ("notified", T0 + 1, None), ("acknowledged", T0 + 2, "4242"), ("resolved", T0 + 4, None)
    ]
    assert [p.notice.kind for p in pending_notices(db)] == [NoticeKind.RESOLVED]


def test_a_condition_back_soon_after_resolving_reopens_its_alert(db: Database) -> None:
    def emergency(now: float, score: int) -> int:
        return raise_alert(
            db, "p1", "news2_high", Severity.EMERGENCY, f"NEWS2 {score} (high risk)", now, {"rr": 25}, score,
            {"rr": 3}, reopen_within_s=600,
        )

    first = emergency(T0, 7)
    acknowledge_alert(db, first, 4242, T0 + 10)
    resolve_alert(db, first, T0 + 100)
    assert emergency(T0 + 700, 8) == first  # 600 s after resolving: the same alert
    reopened = get_alert(db, first)
    assert (reopened.state, reopened.title, reopened.news2, reopened.resolved_at) == (
        AlertState.ACKNOWLEDGED, "NEWS2 8 (high risk)", 8, None
    )
    assert [e.state for e in alert_events(db, first)] == ["raised", "acknowledged", "resolved", "reopened"]
    assert [p.notice.kind for p in pending_notices(db)] == [NoticeKind.RAISED, NoticeKind.RESOLVED, NoticeKind.REOPENED]
    resolve_alert(db, first, T0 + 800)
    second = emergency(T0 + 1401, 7)  # 601 s after: a new alert
    assert second != first and get_alert(db, second).state is AlertState.RAISED
    resolve_alert(db, second, T0 + 1500)
    assert emergency(T0 + 1510, 7) == second and get_alert(db, second).state is AlertState.RAISED  # never taken
    assert escalate_overdue(db, T0 + 1809, after_s=300) == []  # escalation counts from the re-opening
    assert escalate_overdue(db, T0 + 1810, after_s=300) == [second]


def test_escalation_after_the_delay_from_raise_then_from_the_last_escalation(db: Database) -> None:
    urgent = _urgent(db)
    raise_alert(db, "p1", "temp_high", Severity.WARNING, "Temperature high", T0)
    assert escalate_overdue(db, T0 + 299, after_s=300) == []
    assert escalate_overdue(db, T0 + 300, after_s=300) == [urgent]  # warnings never escalate
    assert escalate_overdue(db, T0 + 599, after_s=300) == []
    assert escalate_overdue(db, T0 + 600, after_s=300) == [urgent]
    assert get_alert(db, urgent).escalation_level == 2
    escalations = [p.notice for p in pending_notices(db) if p.notice.kind is NoticeKind.ESCALATED]
    assert [n.escalation_level for n in escalations] == [1, 2]
    acknowledge_alert(db, urgent, 1, T0 + 601)
    assert escalate_overdue(db, T0 + 5000, after_s=300) == []


def test_an_alert_someone_has_only_seen_keeps_escalating_until_a_clinician_acknowledges(
    db: Database,
) -> None:
    urgent = _urgent(db)
    assert note_seen(db, urgent, 20, T0 + 10, "Sam", Role.CAREGIVER) is True
    assert note_seen(db, urgent, 20, T0 + 20, "Sam", Role.CAREGIVER) is False  # once per person
    assert note_seen(db, urgent, 21, T0 + 30, "Kim", Role.CAREGIVER) is True
    assert (get_alert(db, urgent).state, get_alert(db, urgent).acknowledged_by) == (AlertState.RAISED, None)
    assert escalate_overdue(db, T0 + 300, after_s=300) == [urgent]
    assert acknowledge_alert(db, urgent, 10, T0 + 301, "Dr Ada", Role.DOCTOR) is True
    assert note_seen(db, urgent, 22, T0 + 302, "Lee", Role.CAREGIVER) is False  # a clinician has it
    assert escalate_overdue(db, T0 + 5000, after_s=300) == []
    assert [(e.state, e.at, e.actor, e.actor_name, e.actor_role) for e in responses(db, urgent)] == [
        ("seen", T0 + 10, "20", "Sam", Role.CAREGIVER), ("seen", T0 + 30, "21", "Kim", Role.CAREGIVER),
        ("acknowledged", T0 + 301, "10", "Dr Ada", Role.DOCTOR),
    ]
    resolve_alert(db, urgent, T0 + 400)
    assert note_seen(db, urgent, 22, T0 + 401, "Lee", Role.CAREGIVER) is False
    assert note_seen(db, 999, 22, T0 + 401, "Lee", Role.CAREGIVER) is False


def test_an_older_file_turns_caregivers_acknowledgements_into_seen_and_escalates_again(tmp_path: Path) -> None:
    path = tmp_path / "older.db"
    _older_file(path, 6, [])  # written when a caregiver's press acknowledged an alert
    older = sqlite_utils.Database(path)
    with older.conn:
        for telegram_id, role, name in ((10, "doctor", "Dr Ada"), (20, "caregiver", "Sam")):
            older.execute(
                "insert into users (telegram_id, role, display_name, chat_id, joined_at) values (?, ?, ?, ?, ?)",
                [telegram_id, role, name, telegram_id, T0],
            )
            older.execute("insert into patient_members values ('p1', ?, ?, ?)", [telegram_id, role, T0])
        for alert_id, state, by in ((1, "acknowledged", 20), (2, "acknowledged", 10), (3, "resolved", 20)):
            older.execute(
                "insert into alerts (id, patient_id, condition, severity, state, title, raised_at, "
                "acknowledged_by, acknowledged_at, escalation_level) "
                "values (?, 'p1', 'gcs_drop', 'emergency', ?, 'GCS dropped', ?, ?, ?, 0)",
                [alert_id, state, T0, by, T0 + 5],
            )
            older.execute("insert into alert_events (alert_id, at, state, actor) values (?, ?, 'acknowledged', ?)",
                          [alert_id, T0 + 5, str(by)])
    older.close()
    db = open_database(path)
    taken_by_sam, taken_by_doctor, resolved = get_alert(db, 1), get_alert(db, 2), get_alert(db, 3)
    assert (taken_by_sam.state, taken_by_sam.acknowledged_by, taken_by_sam.acknowledged_at) == (
        AlertState.NOTIFIED, None, None
    )
    assert (taken_by_doctor.state, taken_by_doctor.acknowledged_by) == (AlertState.ACKNOWLEDGED, 10)
    assert (resolved.state, resolved.acknowledged_at) == (AlertState.RESOLVED, None)  # re-opens unacknowledged
    assert [(e.state, e.actor_name, e.actor_role) for e in responses(db, 1)] == [("seen", "Sam", Role.CAREGIVER)]
    assert [(e.state, e.actor_name, e.actor_role) for e in responses(db, 2)] == [("acknowledged", "Dr Ada", None)]
    assert escalate_overdue(db, T0 + 300, after_s=300) == [1]


def test_outbox_keeps_order_and_records_retries_and_refusals(db: Database) -> None:
    first, second = _urgent(db), raise_alert(db, "p1", "hr_high", Severity.URGENT, "Heart rate high", T0)
    one, two = pending_notices(db)
    assert (one.notice.alert_id, two.notice.alert_id) == (first, second)
    defer_notice(db, one.notice.outbox_id, "429 too many requests", T0 + 30)
    one_again = pending_notices(db)[0]
    assert (one_again.attempts, one_again.due_at) == (1, T0 + 30)
    assert claim_notice(db, one.notice.outbox_id, T0 + 29, T0 + 59) is False  # not due yet
    assert claim_notice(db, one.notice.outbox_id, T0 + 30, T0 + 60) is True
    assert claim_notice(db, one.notice.outbox_id, T0 + 31, T0 + 61) is False  # held by the first claim
    assert [n.notice.outbox_id for n in due_notices(db, T0 + 31)] == [two.notice.outbox_id]
    assert next_due_at(db) == T0  # the second is due; the first's claim runs until T0 + 60
    assert release_claims(db) == 1  # its claimer died: the next start offers it at once, on its own schedule
    assert [n.notice.outbox_id for n in due_notices(db, T0 + 31)] == [one.notice.outbox_id, two.notice.outbox_id]
    assert pending_notices(db)[0].due_at == T0 + 30
    fail_notice(db, two.notice.outbox_id, "everyone blocked the bot", T0 + 1)
    assert [p.notice.outbox_id for p in pending_notices(db)] == [one.notice.outbox_id]
    assert get_alert(db, second).state is AlertState.RAISED  # never notified
