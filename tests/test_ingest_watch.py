"""Someone is told when vitals stop coming in. The watch itself on both engines, with two instances watching one
store: one notice when no instance leads or the leader cannot reach the broker, one when it ends, whichever instance
tells. And the whole service with a real mosquitto that goes away: the admin reads both notices in Telegram."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from botworld import ADMIN, settings_for

from core.notifications import ServiceEvent
from hemowatch.ingest_watch import IngestWatch
from hemowatch.wiring import running
from localbotapi import BotApiServer
from store import ingest_watch
from store.ingest_watch import Heartbeat
from store.thread import StoreThread
from testsupport.broker import Mosquitto
from testsupport.doubles import T0, ManualClock, RecordingNotifier

AFTER_S = 60.0


async def test_two_watching_instances_tell_the_admins_once_of_each_stop_and_of_its_end(
    store_location: Path | str,
) -> None:
    clock = ManualClock(T0)
    stores = [StoreThread(f"watch-{number}") for number in range(2)]
    notifiers = [RecordingNotifier(), RecordingNotifier()]
    for store in stores:
        await store.open(store_location)
    watches = [IngestWatch(store, notifier, clock, AFTER_S) for store, notifier in zip(stores, notifiers)]

    async def check_all(beat: Heartbeat | None = None) -> list[tuple[ServiceEvent, str]]:
        if beat is not None:
            await stores[0].call(ingest_watch.beat, beat)
        for watch in watches:
            await watch.check()
        told = [(notice.event, notice.reason) for notifier in notifiers for notice in notifier.told_admins]
        for notifier in notifiers:
            notifier.told_admins.clear()
        return told

    try:
        clock.advance(AFTER_S - 1)
        assert await check_all() == []  # nobody has ingested yet, but not for long
        clock.advance(2)
        assert await check_all() == [
            (ServiceEvent.INGEST_STOPPED, "no HemoWatch instance has received vitals since this one started")]
        assert await check_all() == []  # told once, not at every check nor by every instance
        assert await check_all(Heartbeat("host-a:1", clock(), None)) == [
            (ServiceEvent.INGEST_RECOVERED, "no HemoWatch instance has received vitals since this one started")]

        clock.advance(5)
        assert await check_all(Heartbeat("host-a:1", clock(), broker_down_since=clock())) == []
        clock.advance(AFTER_S + 1)
        assert await check_all(Heartbeat("host-a:1", clock(), broker_down_since=clock() - AFTER_S - 1)) == [
            (ServiceEvent.INGEST_STOPPED, "host-a:1 cannot reach the MQTT broker")]
        assert await check_all(Heartbeat("host-a:1", clock(), None)) == [
            (ServiceEvent.INGEST_RECOVERED, "host-a:1 cannot reach the MQTT broker")]

        clock.advance(AFTER_S + 1)  # the leader went silent (killed, frozen, cut off) and nobody took over
        assert await check_all() == [
            (ServiceEvent.INGEST_STOPPED, "no HemoWatch instance leads (the last, host-a:1, went silent)")]
        assert await check_all(Heartbeat("host-b:2", clock(), None)) == [
            (ServiceEvent.INGEST_RECOVERED, "no HemoWatch instance leads (the last, host-a:1, went silent)")]
    finally:
        for store in stores:
            await store.close()


@pytest.mark.timeout(120)
async def test_the_admin_reads_in_telegram_that_the_broker_is_gone_and_that_vitals_come_in_again(
    bot_api: BotApiServer, mosquitto: Mosquitto, database: Path | str, tmp_path: Path
) -> None:
    settings = settings_for(bot_api, database, tmp_path, mqtt_url=mosquitto.url, ingest_stopped_notice_s=2)
    bot_api.introduce(ADMIN, "Ada")
    async with AsyncExitStack() as services:
        service = await services.enter_async_context(running(settings))
        await asyncio.wait_for(service.monitor.subscriber.subscribed.wait(), 10)
        mosquitto.stop()
        stopped = await bot_api.wait_for_message(ADMIN, lambda m: "not being received" in m["text"], timeout=30)
        assert "cannot reach the MQTT broker" in stopped["text"]
        mosquitto.start()
        back = await bot_api.wait_for_message(ADMIN, lambda m: "received again" in m["text"], timeout=30)
        assert "cannot reach the MQTT broker" in back["text"]
    told = [m["text"] for m in bot_api.conversation(ADMIN) if "received" in m["text"]]
    assert len(told) == 2, told
