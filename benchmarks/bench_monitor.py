"""Vitals monitor benchmark through a real mosquitto it starts on a free port.

    .venv/bin/python -m benchmarks.bench_monitor [--messages 50000] [--patients 10000] [--latency-seconds 20]

Prints the machine, then:
1. sustained ingest: messages queued at the broker while the subscriber is away, then drained; messages per
   second validated, scored and stored by the monitor with SQLite `synchronous=FULL` (the default: every
   commit on disk before the broker is acknowledged) and with `NORMAL`, each into its own database file, and
   by a bare aiomqtt subscriber that only parses JSON, in the same run (and the ratio FULL / bare);
2. alert latency from publish to the notifier call (p50, p99) while a separate publisher process sends
   1,000 messages per second (rules without hold and alerts never re-opened, so every alarming probe sample
   raises a NEWS2 alert: the latency is the pipeline's, not a rule's hold);
3. resident memory of this process with every patient's state in memory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiomqtt
import psutil

from core.notifications import AlertNotice, NoticeKind
from core.settings import PROJECT_ROOT, Settings
from monitor.mqtt import vitals_topic
from monitor.vitals_monitor import VitalsMonitor
from store.schema import atomic, open_database
from testsupport.broker import Mosquitto, free_port
from testsupport.machine import machine

PREFIX = "hemowatch"
CALM = {"hr": 74, "spo2": 97, "sbp": 124, "dbp": 78, "rr": 15, "temp": 36.8, "gcs": 15, "o2": False, "acvpu": "A"}
# No persistence, no limit on queued or in-flight messages, no Nagle delay.
BROKER_SETTINGS = ("max_queued_messages 0", "max_inflight_messages 0", "set_tcp_nodelay true")
PROBE_PATIENTS = 20  # patients whose vitals alternate between normal and alarming, one alert each cycle


def _register(db_path: Path, count: int) -> list[str]:
    db = open_database(db_path)
    ids = [f"bench-{number}" for number in range(count)]
    with atomic(db):
        db.conn.executemany(
            "insert into patients (id, name, neuro, monitored, created_at) values (?, ?, 1, 1, ?)",
            [(patient_id, patient_id, time.time()) for patient_id in ids],
        )
    db.close()
    return ids


async def _publish(port: int, messages: list[tuple[str, str]]) -> None:
    async with aiomqtt.Client("127.0.0.1", port, max_inflight_messages=1000) as client:
        for start in range(0, len(messages), 1000):
            chunk = messages[start : start + 1000]
            await asyncio.gather(*(client.publish(topic, payload, qos=1) for topic, payload in chunk))


async def _bare_subscriber_rate(port: int, expected: int, connected: bool) -> float:
    """A subscriber that only parses JSON: connect (to create the session), or drain `expected` messages.
    Timed from the connection on, like the monitor from its start (queued messages arrive before SUBACK)."""
    started, count = time.perf_counter(), 0
    async with aiomqtt.Client("127.0.0.1", port, identifier="bench-bare", clean_session=False) as client:
        await client.subscribe(vitals_topic(PREFIX, "+"), qos=1)
        if not connected:
            return 0.0
        async for message in client.messages:
            json.loads(message.payload)
            count += 1
            if count == expected:
                return count / (time.perf_counter() - started)
    raise AssertionError("unreachable")


class LatencyNotifier:
    """Records, for each RAISED notice, the time from the measurement's publication to this call."""

    def __init__(self) -> None:
        self.latencies_ms: list[float] = []

    async def deliver(self, notice: AlertNotice) -> None:
        if notice.kind is NoticeKind.RAISED and notice.condition == "news2":
            self.latencies_ms.append((time.time() - notice.values["measured_at"]) * 1000)


async def _ingest_rate(monitor: VitalsMonitor, count: int) -> float:
    """Start the monitor on a session with `count` messages waiting; messages stored per second."""
    started = time.perf_counter()
    await monitor.start()
    while monitor.stats.stored < count:
        await asyncio.sleep(0.005)
    return count / (time.perf_counter() - started)


def _publisher(port: int, rate: int, seconds: float, patients: int) -> None:
    """Child process: `rate` messages per second; every 50th message alternates a probe patient between
    normal and alarming (SpO2 85: NEWS2 urgent at once)."""

    async def run() -> None:
        async with aiomqtt.Client("127.0.0.1", port, max_inflight_messages=1000) as client:
            loop = asyncio.get_running_loop()
            started, sent, tick = loop.time(), 0, 0.01
            while loop.time() - started < seconds:
                batch = []
                while sent < (loop.time() - started + tick) * rate:
                    probe, cycle = divmod(sent // 50, PROBE_PATIENTS)
                    if sent % 50 == 0:
                        patient = f"bench-{cycle}"
                        vitals = CALM | ({"spo2": 85} if probe % 2 == 0 else {})
                    else:
                        patient, vitals = f"bench-{PROBE_PATIENTS + sent % (patients - PROBE_PATIENTS)}", CALM
                    batch.append((vitals_topic(PREFIX, patient), json.dumps(vitals | {"ts": time.time()})))
                    sent += 1
                await asyncio.gather(*(client.publish(topic, payload, qos=1) for topic, payload in batch))
                await asyncio.sleep(max(0.0, started + sent / rate - loop.time()))

    asyncio.run(run())


async def main(args: argparse.Namespace) -> None:
    print(f"machine: {machine()}")
    workdir = Path(tempfile.mkdtemp(prefix="hemowatch-bench-"))
    port = free_port()
    broker = Mosquitto(port, workdir, settings=BROKER_SETTINGS)
    broker.start()
    try:
        ids = _register(workdir / "hemowatch.db", args.patients)
        _register(workdir / "normal.db", args.patients)
        settings = Settings(
            _env_file=None, mqtt_url=f"mqtt://127.0.0.1:{port}", hemowatch_db=workdir / "hemowatch.db", rule_hold_s=0,
            alert_reopen_s=0,
        )
        normal = settings.model_copy(update={
            "hemowatch_db": workdir / "normal.db", "sqlite_synchronous": "NORMAL", "mqtt_client_id": "bench-normal",
        })
        notifier = LatencyNotifier()
        rss_before = psutil.Process().memory_info().rss

        # 1. Create the persistent sessions, queue the same messages for each, then time each drain.
        await _bare_subscriber_rate(port, args.messages, connected=False)
        for each in (settings, normal):
            monitor = VitalsMonitor(each, notifier)
            await monitor.start()
            await asyncio.wait_for(monitor.subscriber.subscribed.wait(), 10)
            await monitor.stop()
        base = time.time() - args.messages / 1000
        await _publish(port, [
            (vitals_topic(PREFIX, ids[i % len(ids)]), json.dumps(CALM | {"ts": base + i / 1000, "hr": 60 + i % 30}))
            for i in range(args.messages)
        ])
        bare = await _bare_subscriber_rate(port, args.messages, connected=True)
        monitor = VitalsMonitor(normal, notifier)
        ingest_normal = await _ingest_rate(monitor, args.messages)
        await monitor.stop()
        monitor = VitalsMonitor(settings, notifier)
        ingest = await _ingest_rate(monitor, args.messages)
        print(f"sustained ingest, synchronous=FULL: {ingest:,.0f} messages/s validated, scored and stored "
              f"({args.messages:,} messages, {args.patients:,} patients)")
        print(f"sustained ingest, synchronous=NORMAL: {ingest_normal:,.0f} messages/s; FULL / NORMAL "
              f"{ingest / ingest_normal:.2f}")
        print(f"bare aiomqtt subscriber parsing JSON: {bare:,.0f} messages/s; ratio FULL / bare {ingest / bare:.2f}")

        # 2. Alert latency under a steady 1,000 messages per second from another process.
        publisher = subprocess.Popen([
            sys.executable, "-m", "benchmarks.bench_monitor", "--publisher", str(port), "--rate", "1000",
            "--latency-seconds", str(args.latency_seconds), "--patients", str(args.patients),
        ], cwd=PROJECT_ROOT)
        stored_before, started = monitor.stats.stored, time.perf_counter()
        await asyncio.to_thread(publisher.wait)
        await asyncio.sleep(1)
        rate = (monitor.stats.stored - stored_before) / (time.perf_counter() - started - 1)
        latencies = sorted(notifier.latencies_ms)
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        print(f"alert latency at {rate:,.0f} messages/s: p50 {statistics.median(latencies):.1f} ms, "
              f"p99 {p99:.1f} ms ({len(latencies)} alerts)")

        # 3. Memory with every patient known and judged at least once.
        rss = psutil.Process().memory_info().rss
        print(f"resident memory with {args.patients:,} patients: {rss / 2**20:.0f} MB "
              f"(process before the monitor started: {rss_before / 2**20:.0f} MB)")
        print(f"rejected: {dict(monitor.stats.rejected) or 'none'}")
        await monitor.stop()
    finally:
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("mqtt").setLevel(logging.ERROR)  # aiomqtt's notes about many publishes in flight
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=int, default=1000, help=argparse.SUPPRESS)
    parser.add_argument("--publisher", type=int, metavar="PORT", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.publisher:
        _publisher(arguments.publisher, arguments.rate, arguments.latency_seconds, arguments.patients)
    else:
        asyncio.run(main(arguments))
