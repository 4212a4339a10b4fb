"""Every command and the Acknowledge and read buttons × every role × the caller's own or another patient, through
the real python-telegram-bot stack: what is allowed works, and what is refused changes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from botworld import ADMIN, BotWorld, adopt_card_profile, running_bot

from core.notifications import Severity
from core.roles import Role
from localbotapi import BotApiServer
from store import alerts, people, site_profiles
from store.studies import SeriesRecord, StudyHeader, record_series

DOCTOR, OTHER_DOCTOR, CAREGIVER, OTHER_CAREGIVER, REVOKED, UNKNOWN = 10, 11, 20, 21, 30, 40
CALLERS = {"admin": ADMIN, "doctor": DOCTOR, "caregiver": CAREGIVER, "revoked": REVOKED, "unknown": UNKNOWN}
OWN, OTHER = "ward-1", "ward-2"
CAREGIVER_OF = {OWN: CAREGIVER, OTHER: OTHER_CAREGIVER}

COMMANDS = {
    "status": "/status {patient}",
    "thresholds": "/thresholds {patient}",
    "set-threshold": "/thresholds {patient} spo2 90 100",
    "mute": "/mute {patient} 30",
    "invite-caregiver": "/invite caregiver {patient}",
    "invite-doctor": "/invite doctor {patient}",
    "revoke": "/revoke {caregiver}",
    "addpatient": "/addpatient bed-{caller}",
    "patients": "/patients",
    "help": "/help",
}
SUCCESS = {
    "status": "Patient {patient} (",
    "thresholds": "Alert limits for patient {patient}",
    "set-threshold": "SpO2: 90 to 100%",
    "mute": "paused for 30 minutes",
    "invite-caregiver": "Invitation for a caregiver for patient {patient}",
    "invite-doctor": "Invitation for a doctor for patient {patient}",
    "revoke": "no longer has access",
    "addpatient": "is registered",
    "patients": OWN,
    "help": "/status <patient>",
}
NOT_KNOWN = "I don't know you yet"
NOT_FOUND = "I can't find patient {patient}"


def expected_reply(role: str, command: str, own: bool) -> str:
    if role in ("revoked", "unknown"):
        return NOT_KNOWN
    if role == "admin" or command in ("patients", "help", "status", "thresholds", "mute") and own:
        return SUCCESS[command]
    if command == "invite-doctor":
        return "only for admins" if role == "doctor" else "only for doctors"
    if role == "caregiver" and command in ("invite-caregiver", "revoke", "addpatient"):
        return "only for doctors"
    if command in ("addpatient", "patients", "help"):
        return SUCCESS[command]
    if command == "revoke":
        return SUCCESS[command] if own else "not someone you can remove"
    if not own:
        return NOT_FOUND
    return "Only patient {patient}'s doctors" if role == "caregiver" else SUCCESS[command]


def snapshot(world: BotWorld) -> dict[str, list[tuple]]:
    """Everything a command could change."""
    tables = {
        "patients": "select id from patients",
        "thresholds": "select * from thresholds",
        "mutes": "select * from mutes",
        "invitations": "select role, patient_id, created_by from invitations",
        "users": "select telegram_id, role, revoked_at from users",
        "members": "select patient_id, telegram_id, role from patient_members",
        "alerts": "select id, state, acknowledged_by from alerts",
    }
    return {name: sorted(world.db.execute(sql).fetchall(), key=repr) for name, sql in tables.items()}


@pytest.fixture
async def world(bot_api: BotApiServer, database: Path | str, tmp_path: Path) -> AsyncIterator[BotWorld]:
    async with running_bot(bot_api, database, tmp_path) as world:
        for doctor in (DOCTOR, OTHER_DOCTOR):
            world.add_person(doctor, Role.DOCTOR)
        world.add_patient(OWN, doctor=DOCTOR)
        world.add_patient(OTHER, doctor=OTHER_DOCTOR)
        world.add_person(CAREGIVER, Role.CAREGIVER, OWN)
        world.add_person(OTHER_CAREGIVER, Role.CAREGIVER, OTHER)
        world.add_person(REVOKED, Role.CAREGIVER, OWN)
        people.revoke_user(world.db, REVOKED, world.clock())
        yield world


@pytest.mark.parametrize("own", [True, False], ids=["own-patient", "other-patient"])
@pytest.mark.parametrize("role", list(CALLERS))
@pytest.mark.parametrize("command", list(COMMANDS))
async def test_command_permissions(world: BotWorld, command: str, role: str, own: bool) -> None:
    caller = CALLERS[role]
    patient = OWN if own else OTHER
    text = COMMANDS[command].format(patient=patient, caregiver=CAREGIVER_OF[patient], caller=caller)
    before = snapshot(world)
    reply = await world.say(caller, text)
    wanted = expected_reply(role, command, own).format(patient=patient)
    assert wanted in reply["text"]
    allowed = wanted == SUCCESS[command].format(patient=patient)
    changes = command in ("set-threshold", "mute", "invite-caregiver", "invite-doctor", "revoke", "addpatient")
    assert (snapshot(world) != before) == (allowed and changes)
    if command == "patients" and role != "admin" and allowed:
        assert OTHER not in reply["text"]


@pytest.mark.parametrize("own", [True, False], ids=["own-patient", "other-patient"])
@pytest.mark.parametrize("role", list(CALLERS))
async def test_acknowledge_button_permissions(world: BotWorld, role: str, own: bool) -> None:
    """A replayed or forged button is re-checked: only people who may see the patient can press it, and only
    the patient's doctors (and the admins) acknowledge; a caregiver's press records that they have seen it."""
    caller = CALLERS[role]
    patient = OWN if own else OTHER
    alert_id = alerts.raise_alert(world.db, patient, "spo2_low", Severity.URGENT, "SpO2 low", world.clock())
    some_message = await world.say(caller, "hello")
    answer = await world.press(caller, some_message, f"ack:{alert_id}")
    clinical = role == "admin" or (own and role == "doctor")
    seen = own and role == "caregiver"
    acknowledged_by = alerts.get_alert(world.db, alert_id).acknowledged_by
    responses = [(e.state, e.actor, e.actor_role) for e in alerts.responses(world.db, alert_id)]
    if clinical:
        assert answer["text"] == "Thank you. The others can see you are on it."
        assert (acknowledged_by, responses) == (caller, [("acknowledged", str(caller), Role(role))])
    elif seen:
        assert "you have seen it; the doctors keep being alerted" in answer["text"]
        assert (acknowledged_by, responses) == (None, [("seen", str(caller), Role.CAREGIVER)])
    else:
        assert NOT_KNOWN in answer["text"] or "no longer available" in answer["text"]
        assert (acknowledged_by, responses) == (None, [])


async def test_forged_button_data_is_refused(world: BotWorld) -> None:
    message = await world.say(DOCTOR, "hello")
    for data in ("ack:", "ack:x", "ack:99999", "nonsense", "ack:1:2", "ack:²", "ack:+1", "ack: 1", "ack:1\n"):
        answer = await world.press(DOCTOR, message, data)
        assert "no longer available" in answer["text"]


STUDY_COMMANDS = {"oncall": "/oncall", "oncall-on": "/oncall on", "oncall-off": "/oncall off", "studies": "/studies"}
STUDY_SUCCESS = {"oncall": "Nobody is on call", "oncall-on": "You are on call", "oncall-off": "no longer on call",
                 "studies": "No head CT has been received"}


@pytest.mark.parametrize("role", list(CALLERS))
@pytest.mark.parametrize("command", list(STUDY_COMMANDS))
async def test_study_command_permissions(world: BotWorld, command: str, role: str) -> None:
    """Going on call is for doctors; who is on call and the studies list, for doctors and admins."""
    before = world.db.execute("select telegram_id from on_call").fetchall()
    reply = await world.say(CALLERS[role], STUDY_COMMANDS[command])
    if role in ("revoked", "unknown"):
        wanted = NOT_KNOWN
    elif role == "caregiver":
        wanted = "only for doctors"
    elif role == "admin" and command in ("oncall-on", "oncall-off"):
        wanted = "Only doctors go on call"
    else:
        wanted = STUDY_SUCCESS[command]
    assert wanted in reply["text"]
    changed = world.db.execute("select telegram_id from on_call").fetchall() != before
    assert changed == (role == "doctor" and command == "oncall-on")


@pytest.mark.parametrize("role", list(CALLERS))
async def test_study_acknowledge_button_permissions(world: BotWorld, role: str) -> None:
    """Any doctor (and the admins) may say they are reading a flagged head CT; nobody else."""
    caller = CALLERS[role]
    series = SeriesRecord(
        series_hash="s1", study_hash="t1", ae_title="CT1", n_instances=28, first_received_at=world.clock(),
        last_received_at=world.clock(), analysed_at=world.clock(), verdict="hemorrhage", probability=0.9,
        threshold=0.6, n_slices=28, n_assessable=19, skipped_reason=None, model_version="1.0.0", label="series 2",
    )
    alert_id = record_series(world.db, series, StudyHeader("ACC1", None), None, world.clock())
    some_message = await world.say(caller, "hello")
    answer = await world.press(caller, some_message, f"ack:{alert_id}")
    acknowledged_by = alerts.get_alert(world.db, alert_id).acknowledged_by
    if role in ("admin", "doctor"):
        assert "reading it" in answer["text"] and acknowledged_by == caller
    else:
        assert NOT_KNOWN in answer["text"] or "no longer available" in answer["text"]
        assert acknowledged_by is None


@pytest.mark.parametrize("role", list(CALLERS))
async def test_study_read_button_permissions(world: BotWorld, role: str) -> None:
    """Any doctor (and the admins) may give their read of a head CT from a scanner; nobody else."""
    caller, study = CALLERS[role], "c" * 32
    series = SeriesRecord(
        series_hash="d" * 32, study_hash=study, ae_title="CT1", n_instances=28, first_received_at=world.clock(),
        last_received_at=world.clock(), analysed_at=world.clock(), verdict="hemorrhage", probability=0.9,
        threshold=0.6, n_slices=28, n_assessable=19, skipped_reason=None, model_version="1.0.0", label="series 2",
    )
    record_series(world.db, series, StudyHeader("ACC1", None), None, world.clock())
    site_profiles.keep_case(world.db, scan_ref=site_profiles.study_ref(study), source="dicom", model_sha256="sha",
                            features=np.ones((19, 1280)), shipped=np.full(19, 0.9), now=world.clock(),
                            verdict="hemorrhage", probability=0.9, profile_id=None)
    some_message = await world.say(caller, "hello")
    answer = await world.press(caller, some_message, f"read:study-{study}:0")
    (case,) = site_profiles.cases_of(world.db, site_profiles.study_ref(study))
    if role in ("admin", "doctor"):
        assert answer["text"].startswith("Recorded: no bleed.") and (case.label, case.read_by) == (0, caller)
    else:
        assert (NOT_KNOWN if role in ("revoked", "unknown") else "only for doctors") in answer["text"]
        assert (case.label, case.read_by) == (None, None)


@pytest.mark.parametrize("role", list(CALLERS))
async def test_site_rollback_is_for_admins(world: BotWorld, role: str) -> None:
    profile_id = adopt_card_profile(world.db, 42, world.clock())
    reply = await world.say(CALLERS[role], "/siterollback")
    active = site_profiles.active_profile(world.db)
    if role == "admin":
        assert reply["text"].startswith(f"🧪 Site profile {profile_id} adopted") and active is None
    else:
        assert (NOT_KNOWN if role in ("revoked", "unknown") else "only for admins") in reply["text"]
        assert active.id == profile_id
