"""No alert is thrown away (the whole service: real mosquitto, the local Bot API server, a real SQLite file):
with no admin configured and nobody linked to the patient, the alert stays pending, is logged with its content,
is listed by `hemowatch admin alerts`, and reaches the first doctor who joins."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import aiomqtt
import pytest
from botworld import settings_for
from stores import store_environment

from core.roles import Role
from hemowatch.wiring import running
from localbotapi import BotApiServer
from monitor.mqtt import vitals_topic
from store import open_database, outbox, patients, people
from testsupport.broker import Mosquitto
from testsupport.waiting import eventually

DOCTOR = 10
PATIENT = "bed-12"
REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(120)


def admin(database: Path | str, folder: Path, *args: str) -> str:
    """`hemowatch admin ARGS` as run on the server, in `folder`; its standard output."""
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO)} | store_environment(database, folder)
    done = subprocess.run([sys.executable, "-m", "hemowatch.cli", "admin", *args], env=env, cwd=folder,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_an_alert_nobody_can_receive_waits_for_the_first_doctor_who_joins(
    bot_api: BotApiServer, mosquitto: Mosquitto, database: Path | str, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    settings = settings_for(bot_api, database, tmp_path, mqtt_url=mosquitto.url, admin_user_ids=frozenset(),
                            rule_hold_s=0)
    db = open_database(database)
    patients.add_patient(db, PATIENT, "Ann Smith", time.time())
    async with running(settings) as service:
        await asyncio.wait_for(service.monitor.subscriber.subscribed.wait(), 10)
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as device:
            sample = {"ts": time.time(), "spo2": 85.0, "hr": 104.0, "gcs": 11}
            await device.publish(vitals_topic("hemowatch", PATIENT), json.dumps(sample), qos=1)
        await eventually(lambda: outbox.held_alert_ids(db), 30, "the alert to be kept pending")
        kept = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "kept pending" in r.getMessage()]
        assert any("SpO2 low" in line and "bed-12 (Ann Smith)" in line and "spo2 85" in line for line in kept)
        assert not [entry for entry in outbox.pending_notices(db) if not entry.held and entry.attempts == 0]

        listed = await asyncio.to_thread(admin, database, tmp_path, "alerts")
        assert "SpO2 low" in listed and "kept pending" in listed and PATIENT in listed
        assert listed.splitlines()[0].startswith("id")
        assert PATIENT in await asyncio.to_thread(admin, database, tmp_path, "patients")

        # the operator invites a doctor from the server (`hemowatch admin invite doctor`); the doctor joins
        invitation = people.create_invitation(db, Role.DOCTOR, None, people.SERVER, time.time(), 3600)
        sent = bot_api.send_text(DOCTOR, f"/start {invitation.code}")
        alert = await bot_api.wait_for_message(DOCTOR, lambda m: "SpO2 low" in m.get("text", ""), after=sent,
                                               timeout=10)
        assert "Ann Smith" in alert["text"] and alert["reply_markup"]
        await eventually(lambda: not outbox.held_alert_ids(db), 10, "no alert left waiting for a recipient")
    assert "heard by" in (listed := admin(database, tmp_path, "alerts")) and str(DOCTOR) in listed
    db.close()
