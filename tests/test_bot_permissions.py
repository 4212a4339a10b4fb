"""Every command and the Acknowledge button × every role × the caller's own or another patient, through the
real python-telegram-bot stack: what is allowed works, and what is refused changes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from botworld import ADMIN, BotWorld, running_bot

from core.notifications import Severity
from core.roles import Role
from store import alerts, people
from localbotapi import BotApiServer

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
async def world(bot_api: BotApiServer, tmp_path: Path) -> AsyncIterator[BotWorld]:
    async with running_bot(bot_api, tmp_path) as world:
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
    """A replayed or forged button is re-checked: only people who may see the patient can acknowledge."""
    caller = CALLERS[role]
    patient = OWN if own else OTHER
    alert_id = alerts.raise_alert(world.db, patient, "spo2_low", Severity.URGENT, "SpO2 low", world.clock())
    some_message = await world.say(caller, "hello")
    answer = await world.press(caller, some_message, f"ack:{alert_id}")
    allowed = role == "admin" or (own and role in ("doctor", "caregiver"))
    acknowledged_by = alerts.get_alert(world.db, alert_id).acknowledged_by
    if allowed:
        assert "Thank you" in answer["text"]
        assert acknowledged_by == caller
    else:
        assert NOT_KNOWN in answer["text"] or "no longer available" in answer["text"]
        assert acknowledged_by is None


async def test_forged_button_data_is_refused(world: BotWorld) -> None:
    message = await world.say(DOCTOR, "hello")
    for data in ("ack:", "ack:x", "ack:99999", "nonsense", "ack:1:2"):
        answer = await world.press(DOCTOR, message, data)
        assert "no longer available" in answer["text"]
