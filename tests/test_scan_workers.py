"""Scans are analysed in worker processes with a memory limit: an upload that needs too much memory, or a worker
that dies mid-analysis, costs that one analysis (with a plain message) while the vitals monitor in the service
process keeps storing and alerting, and the next scan gets a working worker. Real mosquitto, SQLite, model."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import numpy as np
import pytest
from botworld import ADMIN, DOCTOR, settings_for
from stores import store_settings
from PIL import Image

from core.notifications import NoticeKind
from core.roles import Role
from core.settings import DEFAULT_MODEL, Settings
from hemowatch.builders import worker_threads
from hemowatch.wiring import RunningService, running
from inference.errors import InputError
from inference.worker import ANALYSIS_STOPPED, NEEDS_TOO_MUCH_MEMORY, ProcessAnalyzer
from localbotapi import BotApiServer
from monitor.mqtt import vitals_topic
from monitor.vitals_monitor import VitalsMonitor
from store import open_database, patients, people
from store.vitals import vitals_between
from store.database import Database
from testsupport.broker import Mosquitto
from testsupport.doubles import ManualClock, RecordingNotifier
from testsupport.waiting import eventually

pytestmark = pytest.mark.timeout(180)
SMALL_LIMIT = 800 * 2**20  # room for the model (about 500 MB) and a normal scan, not for a 36-megapixel picture
HYPOXIC = {"hr": 104, "spo2": 85}


def picture(side: int) -> bytes:
    """A valid colour PNG, `side` pixels square: a bright square on black (a few hundred kB however large)."""
    pixels = np.zeros((side, side, 3), np.uint8)
    pixels[side // 4 : 3 * side // 4, side // 4 : 3 * side // 4] = 200
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def db(database: Path | str, tmp_path: Path) -> Database:
    opened = open_database(database)
    patients.add_patient(opened, "p1", "Ann Smith", time.time() - 3600)
    return opened


@pytest.fixture
async def monitor(
    database: Path | str, tmp_path: Path, mosquitto: Mosquitto, db: Database
) -> AsyncIterator[VitalsMonitor]:
    settings = Settings(_env_file=None, mqtt_url=mosquitto.url, rule_hold_s=0, **store_settings(database, tmp_path))
    async with VitalsMonitor(settings, RecordingNotifier(), ManualClock(time.time())) as running_monitor:
        await asyncio.wait_for(running_monitor.subscriber.subscribed.wait(), 10)
        yield running_monitor


async def _deteriorates(port: int, monitor: VitalsMonitor, db: Database) -> None:
    """p1's SpO2 falls to 85%: stored, and an alert handed to the notifier, while the scan is in trouble."""
    notifier: RecordingNotifier = monitor.outbox._notifier  # noqa: SLF001 - the recorder given above
    before = len(notifier.notices)
    async with aiomqtt.Client("127.0.0.1", port) as device:
        await device.publish(vitals_topic("hemowatch", "p1"), json.dumps({"ts": time.time(), **HYPOXIC}), qos=1)
    await eventually(lambda: len(notifier.notices) > before, what="the SpO2 alert")
    assert (notifier.notices[-1].condition, notifier.notices[-1].kind) == ("spo2_low", NoticeKind.RAISED)
    assert vitals_between(db, "p1", 0, 2e9)[-1].spo2 == 85


async def test_a_scan_needing_more_memory_than_a_worker_may_use_costs_only_its_own_analysis(
    mosquitto: Mosquitto, monitor: VitalsMonitor, db: Database
) -> None:
    analyzer = await asyncio.to_thread(ProcessAnalyzer, DEFAULT_MODEL, workers=1, memory_limit_bytes=SMALL_LIMIT)
    try:
        (worker,) = analyzer.worker_pids()
        huge = asyncio.create_task(asyncio.to_thread(analyzer.analyze_bytes, picture(6000), "scan.png"))
        await _deteriorates(mosquitto.port, monitor, db)
        with pytest.raises(InputError) as refused:
            await huge
        assert str(refused.value) == NEEDS_TOO_MUCH_MEMORY
        (result,) = await asyncio.to_thread(analyzer.analyze_bytes, picture(512), "next.png")
        assert result.verdict == "hemorrhage"  # the shipped model's verdict on this picture, as in one process
        assert result.probability == pytest.approx(0.672, abs=1e-3)
        assert analyzer.worker_pids() == [worker]  # refused inside the worker, which lives on
    finally:
        analyzer.close()


async def test_a_worker_that_dies_mid_analysis_is_replaced_while_vitals_are_stored_and_alerted(
    mosquitto: Mosquitto, monitor: VitalsMonitor, db: Database
) -> None:
    analyzer = await asyncio.to_thread(ProcessAnalyzer, DEFAULT_MODEL, workers=1)
    try:
        (worker,) = analyzer.worker_pids()
        killed: list[str] = []

        def out_of_memory_killer(step: str) -> None:  # as the kernel would, once the picture is decoded
            if not killed:
                killed.append(step)
                os.kill(worker, signal.SIGKILL)

        dying = asyncio.create_task(
            asyncio.to_thread(analyzer.analyze_bytes, picture(6000), "scan.png", out_of_memory_killer)
        )
        with pytest.raises(InputError) as stopped:
            await dying
        assert str(stopped.value) == ANALYSIS_STOPPED and killed
        await _deteriorates(mosquitto.port, monitor, db)  # while the new worker loads the model
        (result,) = await asyncio.to_thread(analyzer.analyze_bytes, picture(512), "next.png")
        assert result.n_slices == 1
        assert analyzer.worker_pids() not in ([], [worker])
        (idle,) = analyzer.worker_pids()
        os.kill(idle, signal.SIGKILL)  # dies while idle: the next scan is not to blame
        # The pool marks itself broken before it reaps the dead worker: from then on a scan finds it broken.
        await eventually(lambda: not _exists(idle), what="the pool to reap its killed worker")
        (result,) = await asyncio.to_thread(analyzer.analyze_bytes, picture(512), "after.png")
        assert result.n_slices == 1
    finally:
        analyzer.close()


@pytest.fixture
async def service(
    bot_api: BotApiServer, mosquitto: Mosquitto, database: Path | str, tmp_path: Path
) -> AsyncIterator[RunningService]:
    settings = settings_for(
        bot_api, database, tmp_path, mqtt_url=mosquitto.url, scan_memory_limit_mb=SMALL_LIMIT / 2**20,
        scan_concurrency=1, rule_hold_s=0,
    )
    db = open_database(database)
    patients.add_patient(db, "p1", "Ann Smith", time.time())
    invitation = people.create_invitation(db, Role.DOCTOR, "p1", ADMIN, time.time(), 3600)
    people.redeem_invitation(db, invitation.code, DOCTOR, "Dr Ada", DOCTOR, time.time())
    async with running(settings) as running_service:
        yield running_service


async def test_the_service_answers_a_memory_hungry_upload_plainly_and_keeps_alerting(
    bot_api: BotApiServer, mosquitto: Mosquitto, service: RunningService
) -> None:
    sent = bot_api.send_document(DOCTOR, picture(6000), "scan.png", "image/png")
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as device:
        await device.publish(vitals_topic("hemowatch", "p1"), json.dumps({"ts": time.time(), **HYPOXIC}), qos=1)
    alert = await bot_api.wait_for_message(DOCTOR, lambda m: "SpO2 low" in m.get("text", ""), timeout=60)
    refusal = await bot_api.wait_for_message(
        DOCTOR, lambda m: "I could not analyse this scan" in m.get("text", ""), timeout=120, after=sent
    )
    assert refusal["text"] == f"I could not analyse this scan. {NEEDS_TOO_MUCH_MEMORY}"
    assert "SpO2 85%" in alert["text"]
    again = bot_api.send_document(DOCTOR, picture(512), "next.png", "image/png")
    await bot_api.wait_for_message(  # the next upload is analysed as usual
        DOCTOR, lambda m: "Decision support only" in m.get("text", ""), timeout=120, after=again
    )


def test_each_worker_gets_its_share_of_the_cores_as_threads() -> None:
    assert worker_threads(2, workers=2, cores=2) == 1  # two studies at once on two cores: one thread each
    assert worker_threads(2, workers=1, cores=2) == 2
    assert worker_threads(2, workers=4, cores=2) == 1  # never none
    assert worker_threads(2, workers=2, cores=8) == 2  # never more than configured
