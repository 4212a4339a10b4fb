"""/healthz and Prometheus /metrics of the whole service (`hemowatch.wiring.running` with METRICS_PORT, a real
mosquitto, the local Bot API server, the model), asked over HTTP as a probe and Prometheus would: not ready while
Telegram refuses the start, ready after; the vitals, alert, outbox and Telegram figures move with what happens;
not ready while another process holds the database's write lock; the DICOM node's spool and analyses."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import aiomqtt
import pytest
from botworld import ADMIN, settings_for
from prometheus_client.parser import text_string_to_metric_families

from core.ports import PortTaken
from core.settings import Settings
from hemowatch.wiring import running
from localbotapi import BotApiServer
from monitor.mqtt import vitals_topic
from store import open_database
from store.patients import add_patient
from testsupport.broker import Mosquitto, free_port
from testsupport.dicom import push
from testsupport.store_lock import write_lock
from testsupport.waiting import eventually

pytestmark = pytest.mark.timeout(180)
CALM = {"hr": 72, "spo2": 97, "sbp": 125, "dbp": 80, "rr": 15, "temp": 36.8, "acvpu": "A"}
Metrics = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def health(settings: Settings) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{settings.metrics_port}/healthz") as answer:
            return answer.status, await answer.json()


async def scrape(settings: Settings) -> Metrics:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{settings.metrics_port}/metrics") as answer:
            assert answer.status == 200
            text = await answer.text()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text) for sample in family.samples
    }


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.get((name, frozenset(labels.items())))


async def until_scraped(settings: Settings, name: str, expected: float, **labels: str) -> Metrics:
    """Scrape until `name` shows `expected`; the last scrape."""
    scraped: Metrics = {}

    async def shows() -> bool:
        nonlocal scraped
        scraped = await scrape(settings)
        return value(scraped, name, **labels) == expected

    deadline = asyncio.get_running_loop().time() + 30
    while not await shows():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"{name}{labels} is {value(scraped, name, **labels)}, not {expected}")
        await asyncio.sleep(0.05)
    return scraped


async def publish(port: int, samples: list[tuple[str, bytes]]) -> None:
    async with aiomqtt.Client("127.0.0.1", port) as client:
        for patient_id, payload in samples:
            await client.publish(vitals_topic("hemowatch", patient_id), payload, qos=1)


def vitals(**changes: object) -> bytes:
    return json.dumps(CALM | changes).encode()


@pytest.fixture
async def services() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as stack:
        yield stack


async def test_ready_after_the_start_and_the_figures_follow_vitals_alerts_telegram_and_a_store_outage(
    bot_api: BotApiServer, mosquitto: Mosquitto, tmp_path: Path, services: AsyncExitStack
) -> None:
    settings = settings_for(bot_api, tmp_path / "hemowatch.db", tmp_path, mqtt_url=mosquitto.url,
                            metrics_port=free_port(), rule_hold_s=0)  # SQLite: its write lock is the store outage
    db = open_database(settings.hemowatch_db)
    add_patient(db, "p1", "Ann Smith", time.time())  # nobody follows Ann: her alerts go to the admin
    bot_api.introduce(ADMIN, "Ada")
    bot_api.fail_next("getMe", 500, count=2)  # the token check fails twice: 1 s, then 2 s before trying again
    starting = asyncio.create_task(services.enter_async_context(running(settings)))
    await eventually(lambda: bot_api.calls_to("getMe"), 60, "the token check")
    assert await health(settings) == (503, {"ready": False, "leader": True, "phase": "starting",
                                            "store_failing_for_s": None})
    service = await asyncio.wait_for(starting, 30)
    assert await health(settings) == (200, {"ready": True, "leader": True, "phase": "running",
                                            "store_failing_for_s": None})
    metrics = await scrape(settings)
    assert value(metrics, "hemowatch_telegram_errors_total", kind="server") == 2
    assert value(metrics, "hemowatch_telegram_errors_total", kind="rate_limited") == 0
    assert value(metrics, "hemowatch_samples_received_total") == 0
    assert (value(metrics, "hemowatch_open_alerts"), value(metrics, "hemowatch_outbox_depth")) == (0, 0)
    assert value(metrics, "hemowatch_leader") == 1

    await asyncio.wait_for(service.monitor.subscriber.subscribed.wait(), 10)
    bot_api.fail_next("sendMessage", 429, retry_after=60)  # the first of the two alerts waits a minute
    await publish(mosquitto.port, [
        ("p1", vitals(hr=70)), ("p1", vitals(hr=71)), ("p1", b'{"hr": "fast"}'), ("nobody", vitals()),
        ("p1", vitals(spo2=86)),  # two alerts: SpO2 low, and NEWS2 (its SpO2 scores 3)
    ])
    metrics = await until_scraped(settings, "hemowatch_samples_stored_total", 3)
    assert value(metrics, "hemowatch_samples_received_total") == 5
    assert value(metrics, "hemowatch_samples_rejected_total", reason="invalid") == 1
    assert value(metrics, "hemowatch_samples_rejected_total", reason="unknown patient") == 1
    assert value(metrics, "hemowatch_ingest_lag_seconds") == 0
    assert value(metrics, "hemowatch_open_alerts") == 2
    metrics = await until_scraped(settings, "hemowatch_outbox_depth", 1)  # the other one is delivered
    assert value(metrics, "hemowatch_telegram_errors_total", kind="rate_limited") == 1
    assert 0 < value(metrics, "hemowatch_outbox_oldest_age_seconds") < 60

    async with write_lock(settings.hemowatch_db):  # vitals cannot be stored: not ready
        await publish(mosquitto.port, [("p1", vitals(hr=73))])
        await eventually(lambda: service.monitor.stats.store_failing_since is not None, 30, "a failed store attempt")
        status, answer = await health(settings)
        assert (status, answer["ready"], answer["phase"]) == (503, False, "running")
        assert answer["store_failing_for_s"] >= 0
        metrics = await scrape(settings)
        assert value(metrics, "hemowatch_store_failing") == 1
        assert value(metrics, "hemowatch_samples_received_total") == 6
        assert value(metrics, "hemowatch_samples_stored_total") == 3
        assert value(metrics, "hemowatch_ingest_lag_seconds") >= 5  # the store attempt waited 5 s for the lock
    metrics = await until_scraped(settings, "hemowatch_samples_stored_total", 4)
    assert value(metrics, "hemowatch_store_failing") == 0
    assert value(metrics, "hemowatch_store_outages_total") == 1
    assert (await health(settings))[0] == 200
    db.close()


async def test_the_dicom_spool_and_the_analyses_of_pushed_series(
    bot_api: BotApiServer, mosquitto: Mosquitto, database: Path | str, tmp_path: Path, ge_series_dir: Path
) -> None:
    settings = settings_for(bot_api, database, tmp_path, mqtt_url=mosquitto.url, metrics_port=free_port(),
                            dicom_port=free_port(), dicom_series_idle_s=0.5, dicom_threshold=0.3,
                            dicom_spool_max_gb=1)
    async with running(settings) as service:
        metrics = await scrape(settings)
        assert value(metrics, "hemowatch_dicom_spool_bytes") == 0
        assert value(metrics, "hemowatch_dicom_spool_limit_bytes") == 2**30
        assert value(metrics, "hemowatch_scan_analysis_seconds_count", source="dicom") == 0
        statuses = await asyncio.to_thread(push, service.dicom.port, sorted(ge_series_dir.glob("*.dcm")))
        assert statuses == [0] * 28
        metrics = await scrape(settings)
        assert value(metrics, "hemowatch_dicom_series_pending") == 1
        assert value(metrics, "hemowatch_dicom_spool_bytes") > 28 * 512 * 512  # 28 slices of 512 x 512 pixels
        metrics = await until_scraped(settings, "hemowatch_scan_analysis_seconds_count", 1, source="dicom")
        assert value(metrics, "hemowatch_scan_analysis_seconds_bucket", source="dicom", le="+Inf") == 1
        assert value(metrics, "hemowatch_scan_analysis_seconds_sum", source="dicom") > 0
        assert value(metrics, "hemowatch_scan_analysis_seconds_count", source="telegram") == 0
        metrics = await until_scraped(settings, "hemowatch_dicom_series_pending", 0)
        assert value(metrics, "hemowatch_dicom_spool_bytes") == 0
        assert value(metrics, "hemowatch_open_alerts") == 1  # flagged at the lowered threshold


async def test_a_taken_metrics_port_is_one_message_naming_the_setting(
    bot_api: BotApiServer, mosquitto: Mosquitto, database: Path | str, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = settings_for(bot_api, database, tmp_path, mqtt_url=mosquitto.url, metrics_port=port)
        with pytest.raises(PortTaken) as refusal:
            async with running(settings):
                pass
    assert str(refusal.value) == (
        f"Port {port} on 127.0.0.1 is already taken, so /healthz and /metrics cannot be served. Set METRICS_PORT to "
        "a free port (METRICS_PORT=0 serves neither)."
    )
