"""The whole service with its DICOM node (`hemowatch.wiring.running`: bot, monitor, real mosquitto, the local Bot
API server, the model): a scanner pushes the GE series with pynetdicom or dcmtk's `storescu`, the doctor on
call gets the heat-map with "I am reading it", acknowledging edits every copy, nobody answering escalates;
`/oncall` and `/studies` with their roles; the alert names the site profile in use and takes a doctor's read.
The GE series (no known bleed) is flagged here by a lowered threshold; a CT-ICH haemorrhage case written as DICOM
is flagged at the model card's."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from botworld import ADMIN, adopt_card_profile, settings_for

from bot import texts
from core.roles import Role
from core.settings import DEFAULT_MODEL
from hemowatch.wiring import RunningService, running
from inference.model import ModelCard
from inference.percent import percent
from localbotapi import JSON, BotApiServer
from store import alerts, open_database, people, site_profiles, studies
from store.database import Database
from testsupport.broker import Mosquitto, free_port
from testsupport.dicom import push
from testsupport.doubles import ManualClock
from testsupport.waiting import eventually
from training.ct_ich import by_patient, read_hu, read_slices
from training.series_writer import write_series

MODEL = ModelCard.beside(DEFAULT_MODEL)

DOCTOR, OTHER_DOCTOR, CAREGIVER = 10, 11, 20
pytestmark = pytest.mark.timeout(180)
Served = tuple[RunningService, ManualClock, Database]


def is_study_alert(message: JSON) -> bool:
    return "Haemorrhage suspected on a head CT" in (message.get("caption") or "") and "edit_date" not in message


@asynccontextmanager
async def started(bot_api: BotApiServer, mosquitto: Mosquitto, database: Path | str, tmp_path: Path,
                  **overrides: object) -> AsyncIterator[Served]:
    """The service with two doctors and a caregiver; the DICOM node on a free port taking CTSCANNER and DCMTKSCU."""
    clock = ManualClock(time.time())
    values: dict[str, object] = {
        "dicom_port": free_port(), "dicom_series_idle_s": 0.5, "dicom_threshold": 0.3,
        "dicom_allowed_aes": "CTSCANNER,DCMTKSCU", **overrides,
    }
    settings = settings_for(bot_api, database, tmp_path, mqtt_url=mosquitto.url, **values)
    db = open_database(database)
    for telegram_id, name in ((DOCTOR, "Dr Ada"), (OTHER_DOCTOR, "Dr Bo")):
        invitation = people.create_invitation(db, Role.DOCTOR, None, ADMIN, clock(), 3600)
        people.redeem_invitation(db, invitation.code, telegram_id, name, telegram_id, clock())
    invitation = people.create_invitation(db, Role.CAREGIVER, None, ADMIN, clock(), 3600)
    people.redeem_invitation(db, invitation.code, CAREGIVER, "Carer", CAREGIVER, clock())
    async with running(settings, clock) as service:
        yield service, clock, db
    db.close()


@pytest.fixture
async def service(
    bot_api: BotApiServer, mosquitto: Mosquitto, database: Path | str, tmp_path: Path
) -> AsyncIterator[Served]:
    async with started(bot_api, mosquitto, database, tmp_path) as served:
        yield served


async def say(api: BotApiServer, user_id: int, text: str) -> JSON:
    sent = api.send_text(user_id, text)
    return await api.wait_for_message(user_id, after=sent)


async def test_the_doctor_on_call_gets_the_heat_map_reads_it_and_everyone_sees_it(
    bot_api: BotApiServer, service: Served, ge_series_dir: Path
) -> None:
    running_service, clock, db = service
    settings = running_service.application.bot_data["shared"].settings
    assert "nobody is on call" in (await say(bot_api, DOCTOR, "/oncall"))["text"].lower()
    assert "You are on call" in (await say(bot_api, DOCTOR, "/oncall on"))["text"]
    assert "Dr Ada" in (await say(bot_api, OTHER_DOCTOR, "/oncall"))["text"]
    assert "only for doctors" in (await say(bot_api, CAREGIVER, "/oncall on"))["text"]
    assert "Only doctors go on call" in (await say(bot_api, ADMIN, "/oncall on"))["text"]
    assert "No head CT" in (await say(bot_api, DOCTOR, "/studies"))["text"]

    statuses = await asyncio.to_thread(push, running_service.dicom.port, sorted(ge_series_dir.glob("*.dcm")))
    assert statuses == [0] * 28
    alert_message = await bot_api.wait_for_message(DOCTOR, is_study_alert, timeout=60)
    caption = alert_message["caption"]
    assert re.search(rf"Probability \d+% \(threshold 30%\), model {re.escape(MODEL.version)}\b", caption)
    assert "From CTSCANNER" in caption
    assert "last slice received" in caption and "Decision support, not a diagnosis" in caption
    assert texts.NOT_VALIDATED in caption
    assert "No single region stands out on the heat-map." in caption  # the GE series' map points nowhere
    assert alert_message["photo"]
    (button,) = alert_message["reply_markup"]["inline_keyboard"][0]
    assert button["text"] == "I am reading it"
    await asyncio.sleep(1.0)  # the doctor not on call and the admin are not disturbed
    assert not [m for m in bot_api.history(OTHER_DOCTOR) if is_study_alert(m)]
    assert not [m for m in bot_api.history(ADMIN) if is_study_alert(m)]

    # nobody reads it: every doctor and the admins are told
    clock.advance(settings.escalate_after_s)
    await running_service.monitor.escalate()
    await bot_api.wait_for_message(OTHER_DOCTOR, lambda m: "goes to more people" in (m.get("caption") or ""))
    await bot_api.wait_for_message(ADMIN, lambda m: "goes to more people" in (m.get("caption") or ""))

    own = await say(bot_api, CAREGIVER, "/studies")  # a caregiver forging the button under a message of theirs
    assert "only for doctors" in own["text"]
    refused = bot_api.press_button(CAREGIVER, own, button["callback_data"])
    await eventually(lambda: refused["id"] in bot_api.callback_answers, 10, "the caregiver's answer")
    assert "no longer available" in bot_api.callback_answers[refused["id"]]["text"]
    bot_api.press_button(DOCTOR, alert_message, button["callback_data"])
    await bot_api.wait_for_message(
        OTHER_DOCTOR, lambda m: "Acknowledged by Dr Ada" in (m.get("caption") or ""), timeout=30
    )
    await eventually(
        lambda: "Acknowledged by Dr Ada" in (bot_api.message(DOCTOR, alert_message["message_id"]).get("caption")
                                             or ""), 10, "the doctor's own copy to be edited",
    )
    (alert,) = alerts.open_alerts(db, studies.STUDY_PATIENT_ID)
    assert alert.acknowledged_by == DOCTOR

    listing = (await say(bot_api, OTHER_DOCTOR, "/studies"))["text"]
    assert "from CTSCANNER" in listing and "read by Dr Ada" in listing
    (audit,) = studies.recent_studies(db)
    shown = percent(audit.probability)  # the alert and the listing give the study's probability alike
    assert f"Probability {shown} (threshold 30%)" in caption
    assert f"haemorrhage suspected {shown} (≥30%)" in listing
    assert audit.notified_at is not None and audit.acknowledged_at is not None


async def test_a_study_alert_names_the_site_profile_and_takes_a_doctors_read(
    bot_api: BotApiServer, service: Served, ge_series_dir: Path
) -> None:
    running_service, clock, db = service
    profile_id = adopt_card_profile(db, 42, clock())
    await say(bot_api, DOCTOR, "/oncall on")
    await say(bot_api, CAREGIVER, "/help")  # a caregiver who has opened the bot still gets no study alert
    assert await asyncio.to_thread(push, running_service.dicom.port, sorted(ge_series_dir.glob("*.dcm"))) == [0] * 28
    alert_message = await bot_api.wait_for_message(DOCTOR, is_study_alert, timeout=60)
    assert f"Calibrated for this hospital on 42 cases (site profile {profile_id})." in alert_message["caption"]
    (audit,) = studies.recent_studies(db)
    taking, reading = alert_message["reply_markup"]["inline_keyboard"]
    assert [button["text"] for button in taking] == ["I am reading it"]
    assert [(button["text"], button["callback_data"]) for button in reading] == [
        ("Bleed confirmed", f"read:study-{audit.study_hash}:1"), ("No bleed", f"read:study-{audit.study_hash}:0"),
    ]
    assert audit.in_casebook and audit.read_label is None

    pressed = bot_api.press_button(DOCTOR, alert_message, f"read:study-{audit.study_hash}:0")
    await eventually(lambda: pressed["id"] in bot_api.callback_answers, 10, "the answer to the read")
    assert bot_api.callback_answers[pressed["id"]]["text"] == texts.read_recorded(0, None)
    (case,) = site_profiles.cases_of(db, site_profiles.study_ref(audit.study_hash))
    assert (case.source, case.label, case.read_by, case.profile_id) == ("dicom", 0, DOCTOR, profile_id)
    assert case.verdict == "hemorrhage" and case.features.shape[1] == 1280
    (n_assessable, series_profile), = db.execute(
        "select n_assessable, site_profile_id from dicom_series where study_hash = ?", [audit.study_hash])
    assert len(case.features) == len(case.shipped) == n_assessable > 0
    assert series_profile == profile_id
    listing = (await say(bot_api, OTHER_DOCTOR, "/studies"))["text"]
    assert listing.endswith("read: no bleed (Dr Ada)")
    assert not [m for m in bot_api.history(CAREGIVER) if m.get("reply_markup")]


@pytest.mark.skipif(shutil.which("storescu") is None, reason="dcmtk is not installed (apt-get install dcmtk)")
async def test_a_series_from_storescu_reaches_every_doctor_when_nobody_is_on_call(
    bot_api: BotApiServer, service: Served, ge_series_dir: Path
) -> None:
    running_service, _, db = service
    await say(bot_api, DOCTOR, "/help")  # users write first, as in Telegram
    await say(bot_api, OTHER_DOCTOR, "/help")
    stored = await asyncio.to_thread(
        subprocess.run,
        ["storescu", "-aet", "DCMTKSCU", "-aec", "HEMOWATCH", "127.0.0.1", str(running_service.dicom.port),
         *map(str, sorted(ge_series_dir.glob("*.dcm")))],
        capture_output=True, text=True,
    )
    assert stored.returncode == 0, stored.stderr
    for doctor in (DOCTOR, OTHER_DOCTOR):
        message = await bot_api.wait_for_message(doctor, is_study_alert, timeout=60)
        assert "From DCMTKSCU" in message["caption"]
    refused = await asyncio.to_thread(
        subprocess.run, ["echoscu", "-aet", "STRANGER", "-aec", "HEMOWATCH", "127.0.0.1",
                         str(running_service.dicom.port)], capture_output=True, text=True,
    )
    assert refused.returncode != 0  # not in DICOM_ALLOWED_AES
    assert len(studies.recent_studies(db)) == 1


async def test_a_haemorrhage_case_is_flagged_at_the_model_cards_threshold(
    bot_api: BotApiServer, mosquitto: Mosquitto, database: Path | str, tmp_path: Path, ct_ich_dir: Path
) -> None:
    """CT-ICH patient 071 (haemorrhage on 19 of its slices) written as a DICOM CT series. The model was trained on
    this collection, so this checks the path end to end, not the model."""
    patient = by_patient(read_slices(ct_ich_dir))["071"]
    paths = write_series([read_hu(ct_ich_dir, item) for item in patient], tmp_path / "ich", spacing_mm=0.4,
                         thickness_mm=5.0)
    async with started(bot_api, mosquitto, database, tmp_path, dicom_threshold=None) as (running_service, _, db):
        await say(bot_api, DOCTOR, "/oncall on")
        assert await asyncio.to_thread(push, running_service.dicom.port, paths) == [0] * len(paths)
        message = await bot_api.wait_for_message(DOCTOR, is_study_alert, timeout=60)
        shown = f"(threshold {percent(MODEL.study.threshold)}), model {MODEL.version}"
        assert shown in message["caption"]
        (audit,) = studies.recent_studies(db)
        assert audit.verdict == "hemorrhage" and audit.threshold == pytest.approx(MODEL.study.threshold)
        assert audit.probability >= audit.threshold
