"""Alert delivery through the real bot stack: who receives what, the Acknowledge button, Telegram failures."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from botworld import ADMIN, DOCTOR, PATIENT, BotWorld, running_ward

from bot.notifier import TelegramNotifier
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
async def world(bot_api: BotApiServer, tmp_path: Path) -> AsyncIterator[BotWorld]:
    async with running_ward(bot_api, tmp_path) as world:
        world.add_person(CAREGIVER, Role.CAREGIVER, PATIENT)
        world.add_person(OTHER_CAREGIVER, Role.CAREGIVER, PATIENT)
        for user in (ADMIN, DOCTOR, CAREGIVER, OTHER_CAREGIVER):  # Telegram bots cannot write first
            await world.say(user, "/start")
        yield world


@pytest.fixture
def notifier(world: BotWorld) -> TelegramNotifier:
    shared = world.application.bot_data["shared"]
    return TelegramNotifier(world.application.bot, shared.store, shared.settings, world.clock)


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
        assert "SpO2 86%" in message["text"] and "Heart rate 121 /min" in message["text"]
        assert "NEWS2 7 (SpO2 3, pulse 2, breathing 2)" in message["text"]
        assert message["reply_markup"]["inline_keyboard"][0][0]["text"] == "Acknowledge"
    assert alert_messages(world, ADMIN) == []


async def test_acknowledging_records_who_and_edits_everyone_s_message(
    world: BotWorld, notifier: TelegramNotifier
) -> None:
    notice = raise_notice(world)
    await notifier.deliver(notice)
    message = await world.api.wait_for_message(CAREGIVER, lambda m: "SpO2 low" in m.get("text", ""))
    button = message["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
    answer = await world.press(CAREGIVER, message, button)
    assert "Thank you" in answer["text"]
    assert alerts.get_alert(world.db, notice.alert_id).acknowledged_by == CAREGIVER
    for user in (DOCTOR, CAREGIVER, OTHER_CAREGIVER):
        edited = await world.api.wait_for_message(user, lambda m: "Acknowledged by User 20" in m.get("text", ""))
        assert "SpO2 low" in edited["text"] and "reply_markup" not in edited
    doctor_message = await world.api.wait_for_message(DOCTOR, lambda m: "SpO2 low" in m.get("text", ""))
    again = await world.press(DOCTOR, doctor_message, button)
    assert again["text"] == "Already acknowledged."
    alerts.resolve_alert(world.db, notice.alert_id, world.clock())
    assert (await world.press(DOCTOR, doctor_message, button))["text"] == "This alert has already been resolved."


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


async def test_escalation_goes_to_the_doctors_then_the_admins(world: BotWorld, notifier: TelegramNotifier) -> None:
    await notifier.deliver(raise_notice(world))
    escalate_after = world.application.bot_data["shared"].settings.escalate_after_s
    for level, admin_told in ((1, False), (2, True)):
        world.clock.advance(escalate_after)
        alerts.escalate_overdue(world.db, world.clock(), escalate_after)
        notice = newest_notice(world)
        assert (notice.kind, notice.escalation_level) == (NoticeKind.ESCALATED, level)
        await notifier.deliver(notice)
        escalations = [m for m in world.api.history(DOCTOR) if "now goes to more people" in m.get("text", "")]
        assert len(escalations) == level
        assert any("now goes to more people" in m.get("text", "") for m in world.api.history(ADMIN)) == admin_told
    assert not any("now goes to more people" in m.get("text", "") for m in world.api.history(CAREGIVER))


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
