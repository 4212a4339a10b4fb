"""Two `hemowatch run` on one PostgreSQL database and one mosquitto (`max_queued_messages 0`): the first leads,
the second stands by. The leader is killed with SIGKILL in the middle of a 6,000-sample QoS 1 stream for 50
patients; the second takes over, every sample is stored exactly once, and a GCS drop published after the kill
reaches the admin exactly once. A leader whose lease is cut stops in one line, and the standby leads. A standby's
DICOM node takes a study, and its alert goes out through the leader's outbox."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import time
import urllib.request
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import psycopg
import pytest
from botworld import ADMIN as BOT_ADMIN
from botworld import settings_for

from core.settings import Settings
from hemowatch.wiring import running
from localbotapi import BotApiServer
from monitor.mqtt import vitals_topic
from store import open_database
from store.leadership import LEADER_KEY
from store.patients import add_patient
from testsupport.broker import Mosquitto, free_port
from testsupport.dicom import push
from testsupport.service_process import RUN, clean_env, read_lines, running_in_session, until_logged
from testsupport.waiting import eventually

pytestmark = pytest.mark.timeout(240)

ADMIN = 900
PATIENTS = [f"bed-{number:02d}" for number in range(50)]
PER_PATIENT = 120
CALM = {"hr": 72, "spo2": 97, "sbp": 125, "dbp": 80, "rr": 15, "temp": 36.8, "gcs": 15, "acvpu": "A"}


@dataclass
class Instance:
    process: asyncio.subprocess.Process
    log: list[str]
    metrics_port: int

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as answer:
            return answer.read().decode()


@asynccontextmanager
async def instance(tmp_path: Path, env: dict[str, str]) -> AsyncIterator[Instance]:
    """`hemowatch run` in a session of its own; whatever of the session is left at the end is killed."""
    tmp_path.mkdir()
    metrics_port = free_port()
    env = clean_env(tmp_path, **env, METRICS_PORT=str(metrics_port))
    process = await asyncio.create_subprocess_exec(*RUN, cwd=tmp_path, env=env, stderr=asyncio.subprocess.PIPE,
                                                   start_new_session=True)
    log: list[str] = []
    reading = asyncio.create_task(read_lines(process.stderr, log))
    try:
        yield Instance(process, log, metrics_port)
    finally:
        for left in running_in_session(process.pid):
            left.kill()
        await process.wait()
        await reading


def service_env(bot_api: BotApiServer, mosquitto: Mosquitto, postgres_url: str) -> dict[str, str]:
    return {"TELEGRAM_BOT_TOKEN": bot_api.token, "TELEGRAM_API_URL": bot_api.url, "DATABASE_URL": postgres_url,
            "MQTT_URL": mosquitto.url}


@asynccontextmanager
async def leader_and_standby(tmp_path: Path, env: dict[str, str]) -> AsyncIterator[tuple[Instance, Instance]]:
    """Two instances: the first once it runs as the leader, then the second once it stands by."""
    async with AsyncExitStack() as instances:
        first = await instances.enter_async_context(instance(tmp_path / "a", env))
        await until_logged(first.log, "HemoWatch is running as @")
        second = await instances.enter_async_context(instance(tmp_path / "b", env))
        await until_logged(second.log, "standing by")
        yield first, second


async def publish(port: int, messages: list[tuple[str, dict]], published: list[int]) -> None:
    """A gateway publishing each message at QoS 1, one after another (each acknowledged by the broker)."""
    async with aiomqtt.Client("127.0.0.1", port, identifier="ward-gateway") as gateway:
        for patient_id, payload in messages:
            await gateway.publish(vitals_topic("hemowatch", patient_id), json.dumps(payload), qos=1)
            published.append(1)


async def test_the_standby_takes_over_a_killed_leader_and_nothing_is_lost_or_doubled(
    bot_api: BotApiServer, mosquitto: Mosquitto, postgres_url: str, tmp_path: Path
) -> None:
    bot_api.introduce(ADMIN, "Ada")  # the admin has opened a chat with the bot
    db = open_database(postgres_url)
    now = time.time()
    for patient_id in PATIENTS:
        add_patient(db, patient_id, f"Patient {patient_id}", now - 3600)
    start = now - 900  # samples from the last quarter of an hour, in the order a ward gateway would send them
    stream = [(patient_id, {"ts": round(start + 5 * step, 3), **CALM, "hr": 60 + step % 30})
              for step in range(PER_PATIENT) for patient_id in PATIENTS]
    stored = lambda: db.execute("select count(*) from vitals").fetchone()[0]  # noqa: E731
    env = service_env(bot_api, mosquitto, postgres_url) | {"ADMIN_USER_IDS": str(ADMIN)}
    async with leader_and_standby(tmp_path, env) as (first, second):
        await until_logged(first.log, "subscribed to hemowatch/patients/+/vitals")
        assert "hemowatch_leader 1.0" in await asyncio.to_thread(first.metrics)
        assert "hemowatch_leader 0.0" in await asyncio.to_thread(second.metrics)

        published: list[int] = []
        gateway = asyncio.create_task(publish(mosquitto.port, stream, published))
        await eventually(lambda: stored() >= len(stream) // 3, timeout=60)
        first.process.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        await first.process.wait()
        assert len(published) < len(stream), "the stream ended before the kill"

        await until_logged(second.log, "this instance leads")
        await gateway
        drop = {"ts": round(time.time(), 3), **CALM, "gcs": 12}
        await publish(mosquitto.port, [(PATIENTS[0], drop)], [])
        await eventually(lambda: stored() == len(stream) + 1, timeout=60)
        taken_over_s = time.monotonic() - killed_at

        alert = await bot_api.wait_for_message(ADMIN, lambda message: "GCS dropped" in message.get("text", ""),
                                               timeout=30)
        assert "from 15 to 12" in alert["text"] and PATIENTS[0] in alert["text"]
        await asyncio.sleep(3)  # time for a second copy, were there one
        copies = [m for m in bot_api.conversation(ADMIN) if "GCS dropped" in m.get("text", "")]
        assert len(copies) == 1
        assert not any("Traceback" in line for line in second.log), "".join(second.log[-40:])

    rows = db.execute("select patient_id, ts, hr from vitals where gcs = 15").fetchall()
    assert sorted(rows) == sorted((patient_id, payload["ts"], payload["hr"]) for patient_id, payload in stream)
    assert taken_over_s < 60


async def test_a_leader_that_loses_its_lease_stops_in_one_line_and_the_standby_leads(
    bot_api: BotApiServer, mosquitto: Mosquitto, postgres_url: str, tmp_path: Path
) -> None:
    env = service_env(bot_api, mosquitto, postgres_url)
    async with leader_and_standby(tmp_path, env) as (first, second):
        with psycopg.connect(postgres_url, autocommit=True) as admin:  # the lease's connection is cut, as by a
            (holder,) = admin.execute(                                  # network fault or a server restart
                "select pid from pg_locks where locktype = 'advisory' and granted and classid = %s and objid = %s",
                [(LEADER_KEY >> 32) & 0xFFFFFFFF, LEADER_KEY & 0xFFFFFFFF],
            ).fetchone()
            admin.execute("select pg_terminate_backend(%s)", [holder])
        assert await asyncio.wait_for(first.process.wait(), 30) == 1
        await until_logged(second.log, "HemoWatch is running as @")
    assert first.log[-1].strip() == (
        "This instance lost its lease on the shared database, so it stopped; another instance leads.")
    assert not any("Traceback" in line for line in first.log), "".join(first.log[-40:])


async def test_a_standbys_dicom_node_alerts_through_the_leaders_outbox(
    bot_api: BotApiServer, mosquitto: Mosquitto, postgres_url: str, tmp_path: Path, ge_series_dir: Path
) -> None:
    def settings(name: str) -> Settings:
        (tmp_path / name).mkdir()
        return settings_for(bot_api, postgres_url, tmp_path / name, mqtt_url=mosquitto.url, dicom_port=free_port(),
                            dicom_series_idle_s=0.5, dicom_threshold=0.3, dicom_allowed_aes="CTSCANNER")

    leader_settings, standby_settings = settings("a"), settings("b")
    bot_api.introduce(BOT_ADMIN, "Ada")
    async with AsyncExitStack() as services:
        await services.enter_async_context(running(leader_settings))
        standing_by = asyncio.create_task(services.enter_async_context(running(standby_settings)))
        try:
            await eventually(lambda: port_open(standby_settings.dicom_port), 60, "the standby's DICOM node")
            statuses = await asyncio.to_thread(push, standby_settings.dicom_port, sorted(ge_series_dir.glob("*.dcm")))
            assert statuses == [0] * 28
            alert = await bot_api.wait_for_message(
                BOT_ADMIN, lambda m: "Haemorrhage suspected on a head CT" in (m.get("caption") or ""), timeout=60)
            assert alert["photo"] and not standing_by.done()  # sent by the leader: the standby still waits
        finally:
            standing_by.cancel()
            with suppress(asyncio.CancelledError):
                await standing_by


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


async def test_a_standby_stops_cleanly_on_sigterm(
    bot_api: BotApiServer, mosquitto: Mosquitto, postgres_url: str, tmp_path: Path
) -> None:
    env = service_env(bot_api, mosquitto, postgres_url)
    async with leader_and_standby(tmp_path, env) as (first, second):
        second.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(second.process.wait(), 30) == 0
        assert first.process.returncode is None  # the leader goes on
    assert not any("Traceback" in line for line in second.log), "".join(second.log[-40:])
