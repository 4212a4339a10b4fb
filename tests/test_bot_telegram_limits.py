"""Texts that must fit Telegram's limits (4,096 characters a message, 1,024 a caption, as the local Bot API server
enforces them) and refusals Telegram will not change its mind about: long patient names and accession numbers are
cut short, a long /patients list comes in pages, an alert Telegram refuses goes out in a short plain form, one
refused even so is named to the admins, and a 400 is never retried."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import aiomqtt
import pytest
from botworld import ADMIN, DOCTOR, PATIENT, BotWorld, running_bot, running_ward, settings_for
from PIL import Image
from telegram import Bot
from telegram.error import BadRequest, TelegramError

from bot.application import register_menu
from bot.notifier import TelegramNotifier
from bot.telegram_calls import is_passing, keep_trying
from core.notifications import AlertNotice, DeliveryHeld, Severity
from hemowatch.wiring import running
from localbotapi import JSON, BotApiServer
from monitor.mqtt import vitals_topic
from store import alerts, open_database, outbox, patients
from store.studies import SeriesRecord, StudyHeader, record_series
from testsupport.broker import Mosquitto
from testsupport.waiting import eventually

LONG_NAME = "A" * 4050
SHOWN_NAME = "A" * 99 + "…"  # 100 characters
pytestmark = pytest.mark.timeout(120)


def notifier_of(world: BotWorld) -> TelegramNotifier:
    shared = world.application.bot_data["shared"]
    return TelegramNotifier(world.application.bot, shared.store, shared.settings, world.clock)


def newest_notice(world: BotWorld) -> AlertNotice:
    return outbox.pending_notices(world.db)[-1].notice


def is_spo2_alert(message: JSON) -> bool:
    return "SpO2 low" in message.get("text", "")


async def test_a_patient_with_a_4050_character_name_gets_its_spo2_alert_to_the_admin(
    bot_api: BotApiServer, mosquitto: Mosquitto, database: Path | str, tmp_path: Path
) -> None:
    """The whole service: the name is stored whole (as by an earlier version) and cut short in the alert."""
    settings = settings_for(bot_api, database, tmp_path, mqtt_url=mosquitto.url, rule_hold_s=0)
    db = open_database(database)
    patients.add_patient(db, "bed-12", LONG_NAME, time.time())
    bot_api.introduce(ADMIN, "Admin")
    async with running(settings) as service:
        await asyncio.wait_for(service.monitor.subscriber.subscribed.wait(), 10)
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as device:
            sample = {"ts": time.time(), "spo2": 85.0, "hr": 104.0}
            await device.publish(vitals_topic("hemowatch", "bed-12"), json.dumps(sample), qos=1)
        alert = await bot_api.wait_for_message(ADMIN, is_spo2_alert, timeout=30)
        assert alert["text"].startswith(
            f"🟠 Urgent – {SHOWN_NAME} (bed-12)\nSpO2 low (below 90%)\nHeart rate 104/min · SpO2 85%\nRaised at "
        )
        assert alert["reply_markup"]["inline_keyboard"][0][0]["text"] == "Acknowledge"
        await eventually(lambda: not outbox.pending_notices(db), 10, "the notice marked delivered")
    db.close()


def overlay_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 40, 40)).save(buffer, "PNG")
    return buffer.getvalue()


async def test_a_flagged_study_with_a_1100_character_accession_reaches_the_admin(
    bot_api: BotApiServer, database: Path | str, tmp_path: Path
) -> None:
    """No doctor: the head CT alert goes to the admin, its accession number cut short, and acknowledging it
    still fits the caption."""
    async with running_bot(bot_api, database, tmp_path) as world:
        await world.say(ADMIN, "/start")
        now = world.clock()
        series = SeriesRecord(
            series_hash="s1", study_hash="t1", ae_title="CTSCANNER", n_instances=28, first_received_at=now,
            last_received_at=now, analysed_at=now, verdict="hemorrhage", probability=0.91, threshold=0.6,
            n_slices=28, n_assessable=19, skipped_reason=None, model_version="1.0.0", label="series 2",
        )
        record_series(world.db, series, StudyHeader("7" * 1100, "2026-11-26 14:02"), overlay_png(), now)
        await notifier_of(world).deliver(newest_notice(world))
        alert = await world.api.wait_for_message(ADMIN, lambda m: "photo" in m)
        assert "Accession " + "7" * 63 + "…, study time 2026-11-26 14:02\nFrom CTSCANNER;" in alert["caption"]
        await world.press(ADMIN, alert, alert["reply_markup"]["inline_keyboard"][0][0]["callback_data"])
        read = await world.api.wait_for_message(ADMIN, lambda m: "Acknowledged by" in (m.get("caption") or ""))
        assert read["caption"].startswith(alert["caption"])
        buttons = [button["callback_data"] for row in read["reply_markup"]["inline_keyboard"] for button in row]
        assert buttons == ["read:study-t1:1", "read:study-t1:0"]  # the doctor's read is still to come

        studies = await world.say(ADMIN, "/studies")
        assert "acc. " + "7" * 63 + "… · from CTSCANNER · " in studies["text"]

        record_series(world.db, replace(series, series_hash="s2", study_hash="t2"), StudyHeader("8", None),
                      overlay_png(), now)
        world.api.fail_next("sendPhoto", 400)  # refused whatever the reason: the short form keeps the picture
        await notifier_of(world).deliver(newest_notice(world))
        short = await world.api.wait_for_message(ADMIN, lambda m: "photo" in m, after=studies)
        assert short["caption"] == (
            "🟠 Urgent – Haemorrhage suspected on a head CT\n"
            "The full alert could not be shown here; send /studies to see the study."
        )
        assert short["reply_markup"]["inline_keyboard"][0][0]["text"] == "I am reading it"


@pytest.fixture
async def ward(bot_api: BotApiServer, database: Path | str, tmp_path: Path) -> AsyncIterator[BotWorld]:
    """The ward-1 patient with its doctor; the admin and the doctor have opened the bot."""
    async with running_ward(bot_api, database, tmp_path) as world:
        for user in (ADMIN, DOCTOR):
            await world.say(user, "/start")
        yield world


def raise_spo2_alert(world: BotWorld) -> AlertNotice:
    alerts.raise_alert(world.db, PATIENT, "spo2_low", Severity.URGENT, "SpO2 low", world.clock(),
                       values={"spo2": 86.0})
    return newest_notice(world)


async def test_an_alert_telegram_refuses_goes_out_in_a_short_plain_form_that_can_be_acknowledged(
    ward: BotWorld
) -> None:
    ward.api.fail_next("sendMessage", 400)
    await notifier_of(ward).deliver(raise_spo2_alert(ward))
    short = await ward.api.wait_for_message(DOCTOR, is_spo2_alert)
    assert short["text"] == (
        "🟠 Urgent – SpO2 low – patient ward-1\nThe full alert could not be shown here; send /status ward-1."
    )
    assert "parse_mode" not in ward.api.calls_to("sendMessage")[-1].params  # plain: no markup to refuse
    await ward.press(DOCTOR, short, short["reply_markup"]["inline_keyboard"][0][0]["callback_data"])
    read = await ward.api.wait_for_message(DOCTOR, lambda m: "Acknowledged by User 10" in m.get("text", ""))
    assert read["text"].startswith(short["text"] + "\n\n✅ Acknowledged by User 10 (doctor) at ")
    assert not [m for m in ward.api.history(ADMIN) if "did not reach" in m.get("text", "")]


async def test_an_alert_refused_also_in_its_short_form_is_named_to_the_admins(
    ward: BotWorld, caplog: pytest.LogCaptureFixture
) -> None:
    ward.api.fail_next("sendMessage", 400, count=2)  # the alert and its short form, to the doctor
    notice = raise_spo2_alert(ward)
    with pytest.raises(DeliveryHeld):  # nobody got it: it stays pending, and the admins know
        await notifier_of(ward).deliver(notice)
    told = await ward.api.wait_for_message(ADMIN, lambda m: "did not reach" in m.get("text", ""))
    assert told["text"] == (
        f"⚠️ Alert {notice.alert_id} (SpO2 low, patient ward-1) did not reach user id 10: Telegram refused it, "
        "also in a short plain form (Bad Request). They do not know about it. On the server, hemowatch admin alerts "
        "lists the open alerts and who heard them."
    )
    assert ward.db.execute("select chat_id, status from deliveries").fetchall() == [(DOCTOR, "failed")]
    assert not [m for m in ward.api.history(DOCTOR) if is_spo2_alert(m)]
    refusals = [r.getMessage() for r in caplog.records if "refused alert" in r.getMessage()]
    assert refusals == [
        f"Telegram refused alert {notice.alert_id} for chat {DOCTOR} (Bad Request); sending its short form",
        f"Telegram refused alert {notice.alert_id} for chat {DOCTOR}, also in its short form: Bad Request",
    ]


async def test_a_long_patient_list_comes_in_pages_and_long_names_are_cut_short(ward: BotWorld) -> None:
    for number in range(120):
        patients.add_patient(ward.db, f"bed-{number:03}", LONG_NAME, ward.clock())
    first = await ward.say(ADMIN, "/patients")
    assert first["text"].endswith("\n\nPage 1 of 4. Send /patients 2 for the next.")
    assert first["text"].splitlines()[:2] == [f"• bed-000 – {SHOWN_NAME}", f"• bed-001 – {SHOWN_NAME}"]
    shown = [first["text"]] + [(await ward.say(ADMIN, f"/patients {number}"))["text"] for number in (2, 3, 4)]
    assert [text.count("\n• ") + 1 for text in shown] == [35, 35, 35, 16]  # 35 lines of 112 characters fill 4,096
    member = f"    User {DOCTOR} (doctor, user id {DOCTOR})"
    assert shown[-1].endswith(f"• ward-1 – Patient ward-1\n{member}\n\nPage 4 of 4.")
    listed = [line.split(" – ")[0] for text in shown for line in text.splitlines() if line.startswith("• ")]
    assert listed == [f"• bed-{number:03}" for number in range(120)] + ["• ward-1"]
    usage = "Use /patients, or /patients <page> for a page from 1 to 4."
    assert (await ward.say(ADMIN, "/patients 5"))["text"] == usage


async def test_addpatient_keeps_a_name_to_100_characters_and_says_so(ward: BotWorld) -> None:
    reply = await ward.say(DOCTOR, f"/addpatient bed-9 {LONG_NAME}")
    assert reply["text"].startswith(f"Patient bed-9 ({SHOWN_NAME}) is registered and you are their doctor.")
    assert reply["text"].endswith("\nNames are kept to 100 characters, so the name is stored shortened, as above.")
    assert patients.get_patient(ward.db, "bed-9").name == SHOWN_NAME


async def test_a_400_is_not_passing_and_not_retried(bot_api: BotApiServer) -> None:
    """python-telegram-bot makes BadRequest a NetworkError; it is still a refusal, not a failure of Telegram."""
    bot_api.fail_next("setMyCommands", 400, count=50)
    errors = []
    async with Bot(bot_api.token, base_url=f"{bot_api.url}/bot") as bot:
        assert not await keep_trying("the command menu (setMyCommands)", lambda: register_menu(bot), first_s=0.01)
        for status, retry_after in ((400, None), (500, None), (429, 1)):
            bot_api.fail_next("sendMessage", status, retry_after)
            with pytest.raises(TelegramError) as failed:
                await bot.send_message(ADMIN, "hello")
            errors.append(failed.value)
    assert len(bot_api.calls_to("setMyCommands")) == 1
    assert isinstance(errors[0], BadRequest)
    assert [is_passing(error) for error in errors] == [False, True, True]


async def test_a_400_from_a_command_reply_is_logged_with_its_traceback(
    ward: BotWorld, caplog: pytest.LogCaptureFixture
) -> None:
    ward.api.fail_next("sendMessage", 400)
    reply = await ward.say(DOCTOR, "/help")
    assert reply["text"] == "Sorry, something went wrong on my side. Please try again in a moment."
    logged = [r for r in caplog.records if r.levelno == logging.ERROR and "while handling update" in r.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info is not None and logged[0].exc_info[0] is BadRequest
