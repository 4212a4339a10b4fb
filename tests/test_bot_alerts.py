"""Alert delivery through the real bot stack: who receives what, the Acknowledge button, Telegram failures."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from botworld import ADMIN, DOCTOR, PATIENT, BotWorld, running_ward

from bot.notifier import TelegramNotifier, notifier_of
from core.notifications import (
    AlertNotice,
    DeliveryDeferred,
    DeliveryHeld,
    NoticeKind,
    ServiceEvent,
    ServiceNotice,
    Severity,
)
from core.roles import Role
from localbotapi import BotApiServer
from store import alerts, outbox, people
from store.thread import StoreThread

CAREGIVER, OTHER_CAREGIVER = 20, 21


@pytest.fixture
async def world(bot_api: BotApiServer, database: Path | str, tmp_path: Path) -> AsyncIterator[BotWorld]:
    async with running_ward(bot_api, database, tmp_path) as world:
        world.add_person(CAREGIVER, Role.CAREGIVER, PATIENT)
        world.add_person(OTHER_CAREGIVER, Role.CAREGIVER, PATIENT)
        for user in (ADMIN, DOCTOR, CAREGIVER, OTHER_CAREGIVER):  # Telegram bots cannot write first
            await world.say(user, "/start")
        yield world


@pytest.fixture
def notifier(world: BotWorld) -> TelegramNotifier:
    return notifier_of(world.application)


def raise_notice(world: BotWorld, severity: Severity = Severity.URGENT) -> AlertNotice:
    alerts.raise_alert(
        world.db, PATIENT, "spo2_low", severity, "SpO2 low", world.clock(),
        values={"spo2": 86.0, "hr": 121.0}, news2=7, news2_components={"spo2": 3, "hr": 2, "rr": 2},
    )
    return newest_notice(world)


def newest_notice(world: BotWorld) -> AlertNotice:
    return outbox.pending_notices(world.db)[-1].notice


def alert_messages(world: BotWorld, chat_id: int) -> list[dict]:
    return [m for m in world.api.history(chat_id) if "SpO2 low" in m.get("text", "") and "edit_date" not in m]


async def test_alert_reaches_the_patients_people_with_values_news2_and_a_button(
    world: BotWorld, notifier: TelegramNotifier
) -> None:
    await notifier.deliver(raise_notice(world))
    for user in (DOCTOR, CAREGIVER, OTHER_CAREGIVER):
        message = await world.api.wait_for_message(user, lambda m: "SpO2 low" in m.get("text", ""))
        assert "Urgent" in message["text"]
        assert "SpO2 86%" in message["text"] and "Heart rate 121/min" in message["text"]
        assert "NEWS2 7 (SpO2 3, pulse 2, respiration rate 2)" in message["text"]
        assert message["reply_markup"]["inline_keyboard"][0][0]["text"] == "Acknowledge"
    assert alert_messages(world, ADMIN) == []


async def test_a_news2_alert_gives_its_score_once_and_then_its_points(
    world: BotWorld, notifier: TelegramNotifier
) -> None:
    alerts.raise_alert(
        world.db, PATIENT, "news2_high", Severity.EMERGENCY, "NEWS2 7 (high risk)", world.clock(),
        values={"spo2": 91.0, "hr": 121.0, "rr": 22.0}, news2=7, news2_components={"spo2": 3, "hr": 2, "rr": 2},
    )
    await notifier.deliver(newest_notice(world))
    message = await world.api.wait_for_message(DOCTOR, lambda m: "high risk" in m.get("text", ""))
    assert message["text"].splitlines()[1:4] == [
        "NEWS2 7 (high risk)",
        "Heart rate 121/min · SpO2 91% · Respiratory rate 22/min",
        "Points from SpO2 3, pulse 2, respiration rate 2",
    ]
    assert message["text"].count("NEWS2") == 1


def hhmm(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%H:%M UTC")


def button(message: dict) -> dict:
    return message["reply_markup"]["inline_keyboard"][0][0]


async def copies_ending(world: BotWorld, copies: list[dict], ending: str) -> list[dict]:
    """Each copy (a message in its user's chat) as it is once its text ends with `ending`."""
    for copy in copies:
        chat, message_id = copy["chat"]["id"], copy["message_id"]
        await world.api.wait_for_message(
            chat, lambda m, i=message_id: m["message_id"] == i and m["text"].endswith(ending)
        )
    return [world.api.message(copy["chat"]["id"], copy["message_id"]) for copy in copies]


async def test_a_caregiver_s_press_is_seen_on_every_copy_and_only_a_doctor_s_acknowledges(
    world: BotWorld, notifier: TelegramNotifier
) -> None:
    notice = raise_notice(world, Severity.EMERGENCY)
    await notifier.deliver(notice)
    copies = [
        await world.api.wait_for_message(user, lambda m: "SpO2 low" in m.get("text", ""))
        for user in (DOCTOR, CAREGIVER, OTHER_CAREGIVER)
    ]
    doctor_s, caregiver_s, other_caregiver_s = copies
    data = button(caregiver_s)["callback_data"]

    world.clock.advance(60)
    seen = f"👀 Seen by User 20 (caregiver) at {hhmm(world.clock())}"
    answer = await world.press(CAREGIVER, caregiver_s, data)
    assert answer["text"] == (
        "Thank you. The others can see you have seen it; the doctors keep being alerted until one of them acknowledges."
    )
    alert = alerts.get_alert(world.db, notice.alert_id)
    assert (alert.state, alert.acknowledged_by) == (alerts.AlertState.RAISED, None)
    for edited in await copies_ending(world, copies, f"\n\n{seen}\n⏳ No doctor has acknowledged it yet."):
        assert edited["text"].startswith("🔴 EMERGENCY – Patient ward-1 (ward-1)\nSpO2 low\n")
        assert button(edited) == {"text": "Acknowledge", "callback_data": data}  # still there for the doctors
    again = await world.press(CAREGIVER, caregiver_s, data)
    assert again["text"] == "Already noted, thank you. A doctor still needs to acknowledge it."

    escalate_after = world.application.bot_data["shared"].settings.escalate_after_s
    world.clock.advance(escalate_after - 60)  # the caregiver's press did not stop the escalation clock
    assert alerts.escalate_overdue(world.db, world.clock(), escalate_after) == [notice.alert_id]
    await notifier.deliver(newest_notice(world))
    escalation = await world.api.wait_for_message(DOCTOR, lambda m: "⏫" in m.get("text", ""))
    assert escalation["text"].endswith(
        f"⏫ Reminder: no doctor has acknowledged this yet.\n\n{seen}\n⏳ No doctor has acknowledged it yet."
    )
    assert button(escalation) == {"text": "Acknowledge", "callback_data": data}
    copies.append(escalation)

    world.clock.advance(60)
    acknowledged = f"\n\n{seen}\n✅ Acknowledged by User 10 (doctor) at {hhmm(world.clock())}"
    answer = await world.press(DOCTOR, escalation, data)
    assert answer["text"] == "Thank you. The others can see you are on it."
    assert alerts.get_alert(world.db, notice.alert_id).acknowledged_by == DOCTOR
    for edited in await copies_ending(world, copies, acknowledged):
        assert "reply_markup" not in edited
    world.clock.advance(escalate_after)
    assert alerts.escalate_overdue(world.db, world.clock(), escalate_after) == []

    status = await world.say(OTHER_CAREGIVER, f"/status {PATIENT}")
    assert "• emergency: SpO2 low, raised 11 min ago, acknowledged by User 10 (doctor)" in status["text"]
    assert (await world.press(OTHER_CAREGIVER, other_caregiver_s, data))["text"] == "Already acknowledged."
    alerts.resolve_alert(world.db, notice.alert_id, world.clock())
    assert (await world.press(DOCTOR, doctor_s, data))["text"] == "This alert has already been resolved."


async def test_once_resolved_every_copy_says_so_and_loses_its_button(
    world: BotWorld, notifier: TelegramNotifier
) -> None:
    notice = raise_notice(world)
    await notifier.deliver(notice)
    copies = [
        await world.api.wait_for_message(user, lambda m: "SpO2 low" in m.get("text", ""))
        for user in (DOCTOR, CAREGIVER)
    ]
    await world.press(CAREGIVER, copies[1], button(copies[1])["callback_data"])
    seen = f"👀 Seen by User 20 (caregiver) at {hhmm(world.clock())}"
    world.clock.advance(120)
    alerts.resolve_alert(world.db, notice.alert_id, world.clock())
    await notifier.deliver(newest_notice(world))
    for edited in await copies_ending(world, copies, f"\n\n{seen}\n✅ Resolved at {hhmm(world.clock())}"):
        assert "reply_markup" not in edited
    for user in (DOCTOR, CAREGIVER):
        (resolved,) = [m for m in world.api.history(user) if m.get("text", "").startswith("✅ Resolved: SpO2 low")]
        assert "reply_markup" not in resolved


async def test_status_says_who_has_seen_an_alert_no_doctor_has_acknowledged(
    world: BotWorld, notifier: TelegramNotifier
) -> None:
    notice = raise_notice(world)
    await notifier.deliver(notice)
    for user in (CAREGIVER, OTHER_CAREGIVER):
        message = await world.api.wait_for_message(user, lambda m: "SpO2 low" in m.get("text", ""))
        await world.press(user, message, button(message)["callback_data"])
    status = await world.say(DOCTOR, f"/status {PATIENT}")
    assert (
        "• urgent: SpO2 low, raised just now, seen by User 20 (caregiver), User 21 (caregiver); "
        "no doctor has acknowledged it yet"
    ) in status["text"]


async def test_rate_limit_then_server_error_still_delivers_exactly_once(
    world: BotWorld, notifier: TelegramNotifier
) -> None:
    notice = raise_notice(world)
    world.api.fail_next("sendMessage", 429, retry_after=7)
    with pytest.raises(DeliveryDeferred) as rate_limited:
        await notifier.deliver(notice)
    assert rate_limited.value.retry_after == 7
    world.api.fail_next("sendMessage", 500)
    with pytest.raises(DeliveryDeferred):
        await notifier.deliver(notice)
    await notifier.deliver(notice)
    await notifier.deliver(notice)  # a retry after a crash: nobody hears it twice
    for user in (DOCTOR, CAREGIVER, OTHER_CAREGIVER):
        assert len(alert_messages(world, user)) == 1


async def test_a_blocked_chat_is_recorded_and_skipped(world: BotWorld, notifier: TelegramNotifier) -> None:
    world.api.block(CAREGIVER)
    await notifier.deliver(raise_notice(world))
    assert people.get_person(world.db, CAREGIVER).blocked
    assert len(alert_messages(world, DOCTOR)) == 1
    sends_before = len(world.api.calls_to("sendMessage"))
    await notifier.deliver(raise_notice(world))
    assert len(world.api.calls_to("sendMessage")) == sends_before + 2  # the blocked chat is not tried again
    world.api.blocked.discard(CAREGIVER)  # they unblock the bot and write to it: alerts reach them again
    await world.say(CAREGIVER, "/help")
    await notifier.deliver(raise_notice(world))
    assert len(alert_messages(world, CAREGIVER)) == 1


async def test_held_when_nobody_can_receive(world: BotWorld, notifier: TelegramNotifier) -> None:
    for user in (DOCTOR, CAREGIVER, OTHER_CAREGIVER):
        world.api.block(user)
    with pytest.raises(DeliveryHeld):
        await notifier.deliver(raise_notice(world))


async def test_mute_silences_warnings_but_never_emergencies(world: BotWorld, notifier: TelegramNotifier) -> None:
    reply = await world.say(CAREGIVER, f"/mute {PATIENT} 60")
    assert "paused for 60 minutes" in reply["text"]
    await notifier.deliver(raise_notice(world, Severity.WARNING))
    await notifier.deliver(raise_notice(world, Severity.EMERGENCY))
    received = [m["text"] for m in alert_messages(world, CAREGIVER)]
    assert len(received) == 1 and "EMERGENCY" in received[0]
    assert len(alert_messages(world, OTHER_CAREGIVER)) == 2
    world.clock.advance(3600)
    await notifier.deliver(raise_notice(world, Severity.WARNING))
    assert len(alert_messages(world, CAREGIVER)) == 2


async def test_escalation_reminds_the_doctors_then_goes_to_the_admins_too(
    world: BotWorld, notifier: TelegramNotifier
) -> None:
    await notifier.deliver(raise_notice(world))
    escalate_after = world.application.bot_data["shared"].settings.escalate_after_s
    reminder = "⏫ Reminder: no doctor has acknowledged this yet."
    widened = "⏫ No doctor has acknowledged this yet, so it now goes to more people."
    expected: dict[int, list[str]] = {DOCTOR: [], ADMIN: [], CAREGIVER: []}
    for level, line, told in ((1, reminder, [DOCTOR]), (2, widened, [DOCTOR, ADMIN]), (3, reminder, [DOCTOR, ADMIN])):
        world.clock.advance(escalate_after)
        alerts.escalate_overdue(world.db, world.clock(), escalate_after)
        notice = newest_notice(world)
        assert (notice.kind, notice.escalation_level) == (NoticeKind.ESCALATED, level)
        await notifier.deliver(notice)
        for user in told:
            expected[user].append(line)
        assert {user: escalation_lines(world, user) for user in expected} == expected, level


def escalation_lines(world: BotWorld, user: int) -> list[str]:
    return [line for m in world.api.history(user) for line in m.get("text", "").splitlines() if line.startswith("⏫")]


async def test_service_notices_reach_the_admins_only_and_need_no_store(world: BotWorld) -> None:
    settings = world.application.bot_data["shared"].settings
    never_opened = StoreThread("unused")  # any store call would fail: the notice may be about the store failing
    notifier = TelegramNotifier(world.application.bot, never_opened, settings, world.clock)
    since, reason = datetime(2027, 1, 15, 9, 41, tzinfo=UTC), "database or disk is full"
    world.api.fail_next("sendMessage", 502)  # Telegram fails once: tried again
    await notifier.tell_admins(ServiceNotice(ServiceEvent.STORE_FAILING, since, reason))
    await notifier.tell_admins(ServiceNotice(ServiceEvent.STORE_RECOVERED, since, reason, since + timedelta(minutes=7)))
    assert [m["text"] for m in world.api.history(ADMIN) if "Vitals" in m.get("text", "")] == [
        "🔴 Vitals are not being stored\nThe database has been failing since 09:41 UTC (database or disk is full). "
        "Readings wait at the MQTT broker and are stored once it works again; until then no vitals alert can be "
        "raised. Check the server's disk and database file.",
        "✅ Vitals are stored again\nThe database failed from 09:41 UTC to 09:48 UTC (database or disk is full). "
        "The readings kept at the broker meanwhile are being stored and judged now.",
    ]
    for user in (DOCTOR, CAREGIVER):
        assert not any("Vitals" in m.get("text", "") for m in world.api.history(user))
    no_admins = settings.model_copy(update={"admin_user_ids": frozenset()})
    with pytest.raises(DeliveryHeld, match="ADMIN_USER_IDS"):
        await TelegramNotifier(world.application.bot, never_opened, no_admins).tell_admins(
            ServiceNotice(ServiceEvent.STORE_FAILING, since, reason)
        )
    await never_opened.close()
