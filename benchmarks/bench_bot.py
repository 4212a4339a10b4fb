"""How fast the bot answers: a photo update to its verdict with four doctors sending at once, and an MQTT
publish to the alert's sendMessage while 1,000 vitals per second flow.

The whole service runs through `hemowatch.wiring.serve`, against the local Bot API server of the tests and a
mosquitto broker this script starts (both from `testsupport`); the vitals load comes from a separate process,
like real devices.

    .venv/bin/python -m benchmarks.bench_bot [--head-ct ../shared/data/head-ct] [--photos 10] [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import tempfile
import time
from pathlib import Path

import aiomqtt

from core.roles import Role
from core.settings import Settings
from hemowatch.wiring import serve
from localbotapi import BotApiServer
from monitor.mqtt import vitals_topic
from store import open_database, patients, people
from testsupport.machine import machine
from testsupport.surroundings import surroundings

ROOT = Path(__file__).resolve().parents[1]
DOCTORS = (101, 102, 103, 104)
ON_CALL = 200  # the doctor of the patients whose alerts are timed
BEDS = 50  # patients whose normal vitals make up the load
PREFIX = "hemowatch"
NORMAL = {"hr": 76.0, "spo2": 97.0, "sbp": 124.0, "dbp": 78.0, "rr": 15.0, "temp": 36.8}
DETERIORATED = {"hr": 128.0, "spo2": 82.0}


def percentiles(samples: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return {"p50": statistics.median(samples), "p95": cuts[94], "p99": cuts[98], "max": max(samples)}


def prepare_store(settings: Settings, alert_patients: list[str]) -> None:
    """Doctors who joined by invitation, the beds of the load, and patients whose alerts are timed."""
    db = open_database(settings.hemowatch_db)
    now = time.time()
    for doctor in (*DOCTORS, ON_CALL):
        invitation = people.create_invitation(db, Role.DOCTOR, None, 0, now, 3600)
        people.redeem_invitation(db, invitation.code, doctor, f"Dr {doctor}", doctor, now)
    for number in range(BEDS):
        patients.add_patient(db, f"bed-{number:03d}", f"Bed {number}", now)
    for patient_id in alert_patients:
        patients.add_patient(db, patient_id, f"Timed {patient_id}", now)
        people.add_member(db, patient_id, ON_CALL, Role.DOCTOR, now)
    db.close()


async def photo_latencies(api: BotApiServer, pictures: list[bytes], per_doctor: int, doctors: tuple[int, ...]
                          ) -> list[float]:
    """Each doctor sends `per_doctor` photos one after another; all `doctors` at the same time."""

    async def doctor_sends(doctor: int) -> list[float]:
        seconds = []
        for number in range(per_doctor):
            sent = api.send_photo(doctor, pictures[(doctor + number) % len(pictures)])
            started = time.perf_counter()  # the update is queued for the bot from here on
            await api.wait_for_message(doctor, lambda m: "Decision support only" in m.get("text", ""), 60, sent)
            seconds.append(time.perf_counter() - started)
        return seconds

    per_doctor_seconds = await asyncio.gather(*(doctor_sends(doctor) for doctor in doctors))
    return [value for values in per_doctor_seconds for value in values]


def publish_load(port: int, rate: int, seconds: float, published: multiprocessing.Value) -> None:
    """Normal vitals from the beds at `rate` messages per second (QoS 1), in its own process."""

    async def run() -> None:
        async with aiomqtt.Client("127.0.0.1", port, max_inflight_messages=200) as client:
            client.pending_calls_threshold = rate  # many publishes are in flight at once on purpose
            started = time.monotonic()
            while (elapsed := time.monotonic() - started) < seconds:
                due = int(elapsed * rate) - published.value
                await asyncio.gather(*(
                    client.publish(vitals_topic(PREFIX, f"bed-{(published.value + i) % BEDS:03d}"),
                                   json.dumps({"ts": time.time(), **NORMAL}), qos=1)
                    for i in range(due)
                ))
                published.value += due
                await asyncio.sleep(0.01)

    asyncio.run(run())


async def alert_latencies(api: BotApiServer, port: int, alert_patients: list[str], seconds: float
                          ) -> tuple[list[float], int]:
    """Time from publishing a deteriorated reading to the alert's sendMessage, while the load runs."""
    published = multiprocessing.get_context("spawn").Value("i", 0)
    load = multiprocessing.get_context("spawn").Process(target=publish_load, args=(port, 1000, seconds, published))
    load.start()
    published_at: dict[str, float] = {}
    async with aiomqtt.Client("127.0.0.1", port) as client:
        while published.value == 0:  # let the load get going first
            await asyncio.sleep(0.05)
        spacing = (seconds - 2) / len(alert_patients)
        for patient_id in alert_patients:
            await asyncio.sleep(spacing)
            published_at[patient_id] = time.perf_counter()
            await client.publish(vitals_topic(PREFIX, patient_id), json.dumps({"ts": time.time(), **DETERIORATED}), qos=1)
    await asyncio.to_thread(load.join)
    latencies = [await _alert_sent(api, patient_id) - at for patient_id, at in published_at.items()]
    return latencies, published.value


async def _alert_sent(api: BotApiServer, patient_id: str, timeout: float = 30) -> float:
    """When the on-call doctor's alert about `patient_id` reached the Bot API server."""
    await api.wait_for_message(ON_CALL, lambda m: f"({patient_id})" in m.get("text", ""), timeout)
    return next(call.at for call in api.calls_to("sendMessage")
                if call.status == 200 and call.params.get("chat_id") == ON_CALL
                and f"({patient_id})" in call.params.get("text", ""))


async def measure(args: argparse.Namespace, workdir: Path) -> None:
    pictures = [path.read_bytes() for path in sorted((args.head_ct / "images").glob("*.png"))[:20]]
    alert_patients = [f"timed-{number:03d}" for number in range(args.alerts)]
    async with surroundings(workdir, mqtt_topic_prefix=PREFIX, rule_hold_s=0, scan_rate_limit=100_000,
                            dicom_port=0) as around:
        api, port, settings = around.api, around.broker.port, around.settings
        prepare_store(settings, [*alert_patients, "warm-up"])
        stop = asyncio.Event()
        service = asyncio.create_task(serve(settings, stop))
        try:
            for user in (*DOCTORS, ON_CALL):  # users write first, as in Telegram; the reply shows the bot is up
                await api.wait_for_message(user, after=api.send_text(user, "/help"), timeout=60)
            await _warm_up(api, port)
            alone = await photo_latencies(api, pictures, args.photos, DOCTORS[:1])
            photos = await photo_latencies(api, pictures, args.photos, DOCTORS)
            alerts, published = await alert_latencies(api, port, alert_patients, args.seconds)
        finally:
            stop.set()
            await service
    db = open_database(settings.hemowatch_db)
    stored = db["vitals"].count_where("patient_id like 'bed-%'")
    db.close()
    single, photo = percentiles(alone), percentiles(photos)
    alert = {key: value * 1000 for key, value in percentiles(alerts).items()}
    print(f"machine: {machine()}")
    print(f"photo update -> verdict, one doctor alone, {len(alone)} photos: p50 {single['p50']:.2f} s, "
          f"max {single['max']:.2f} s")
    print(f"photo update -> verdict, {len(DOCTORS)} doctors at once, {len(photos)} photos: "
          f"p50 {photo['p50']:.2f} s, p95 {photo['p95']:.2f} s, max {photo['max']:.2f} s (target p95 <= 1.5 s)")
    print(f"MQTT publish -> alert sendMessage, {len(alerts)} alerts during {args.seconds:g} s of "
          f"{published / args.seconds:,.0f} vitals/s: p50 {alert['p50']:.0f} ms, p95 {alert['p95']:.0f} ms, "
          f"p99 {alert['p99']:.0f} ms, max {alert['max']:.0f} ms (target p99 <= 250 ms); "
          f"{stored:,} of {published:,} load readings stored")


async def _warm_up(api: BotApiServer, port: int) -> None:
    """One alert end to end, so the monitor is subscribed and the model loaded before anything is timed."""
    async with aiomqtt.Client("127.0.0.1", port) as client:
        for _ in range(60):  # readings sent before the monitor subscribed are lost, as with real devices
            await client.publish(vitals_topic(PREFIX, "warm-up"), json.dumps({"ts": time.time(), **DETERIORATED}), qos=1)
            try:
                await _alert_sent(api, "warm-up", timeout=1)
                return
            except TimeoutError:
                continue
    raise TimeoutError("the monitor raised no alert within a minute")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--head-ct", type=Path, default=ROOT.parent / "shared" / "data" / "head-ct",
                        help="folder with images/*.png head CT slices")
    parser.add_argument("--photos", type=int, default=10, help="photos each of the four doctors sends")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long the vitals load runs")
    parser.add_argument("--alerts", type=int, default=100, help="alerts timed during the load")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        asyncio.run(measure(args, Path(workdir)))


if __name__ == "__main__":
    main()
