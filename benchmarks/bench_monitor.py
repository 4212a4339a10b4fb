"""Vitals monitor benchmark through a real mosquitto it starts on a free port.

    .venv/bin/python -m benchmarks.bench_monitor [--messages 50000] [--patients 10000] [--latency-seconds 20]

Prints the machine, then:
1. sustained ingest: messages queued at the broker while the subscriber is away, then drained; messages per
   second validated, scored and stored by the monitor with SQLite `synchronous=FULL` (the default: every
   commit on disk before the broker is acknowledged), with `NORMAL`, and with PostgreSQL (a server it starts
   from Debian's package, with its durable defaults: fsync and synchronous_commit on), and by a bare aiomqtt
   subscriber that only parses JSON, in the same run;
2. alert latency from publish to the notifier call (p50, p99), on SQLite (FULL) and on PostgreSQL, while a
   separate publisher process sends 1,000 messages per second (rules without hold and alerts never re-opened,
   so every alarming probe sample raises a NEWS2 alert: the latency is the pipeline's, not a rule's hold);
3. resident memory of this process with every patient's state in memory;
4. retention: samples pruned per second by the hourly job's delete, on SQLite (FULL) and PostgreSQL;
and for each store the bytes on disk per stored sample (the vitals table with its indexes).
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
from pydantic import SecretStr

from core.notifications import AlertNotice, NoticeKind
from core.settings import PROJECT_ROOT, Settings
from monitor.mqtt import vitals_topic
from monitor.vitals_monitor import VitalsMonitor
from store import atomic, open_database
from store.vitals import prune_vitals
from testsupport.broker import Mosquitto, free_port
from testsupport.machine import machine
from testsupport.postgres import PostgresServer

PREFIX = "hemowatch"
CALM = {"hr": 74, "spo2": 97, "sbp": 124, "dbp": 78, "rr": 15, "temp": 36.8, "gcs": 15, "o2": False, "acvpu": "A"}
# No persistence, no limit on queued or in-flight messages, no Nagle delay.
BROKER_SETTINGS = ("max_queued_messages 0", "max_inflight_messages 0", "set_tcp_nodelay true")
PROBE_PATIENTS = 20  # patients whose vitals alternate between normal and alarming, one alert each cycle


def _register(database: Path | str, count: int) -> list[str]:
    db = open_database(database)
    ids = [f"bench-{number}" for number in range(count)]
    with atomic(db):
        db.executemany(
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


def _bytes_per_sample(settings: Settings) -> float:
    """The vitals table's size on disk, indexes included, per stored sample."""
    db = open_database(settings.database)
    try:
        count = db.execute("select count(*) from vitals").fetchone()[0]
        if db.engine == "postgresql":
            size = db.execute("select pg_total_relation_size('vitals')").fetchone()[0]
        else:
            db.execute("pragma wal_checkpoint(truncate)")
            size = sum(row[0] for row in db.execute("select pgsize from dbstat where name like '%vitals%'").fetchall())
    finally:
        db.close()
    return size / count


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


async def _alert_latency(settings: Settings, port: int, args: argparse.Namespace) -> tuple[float, list[float]]:
    """Messages per second and alert latencies (ms) of a monitor on a new session while a separate publisher
    process sends 1,000 messages per second."""
    notifier = LatencyNotifier()
    monitor = VitalsMonitor(settings, notifier)
    await monitor.start()
    await asyncio.wait_for(monitor.subscriber.subscribed.wait(), 10)
    publisher = subprocess.Popen([
        sys.executable, "-m", "benchmarks.bench_monitor", "--publisher", str(port), "--rate", "1000",
        "--latency-seconds", str(args.latency_seconds), "--patients", str(args.patients),
    ], cwd=PROJECT_ROOT)
    stored_before, started = monitor.stats.stored, time.perf_counter()
    await asyncio.to_thread(publisher.wait)
    await asyncio.sleep(1)
    rate = (monitor.stats.stored - stored_before) / (time.perf_counter() - started - 1)
    await monitor.stop()
    return rate, sorted(notifier.latencies_ms)


async def main(args: argparse.Namespace) -> None:
    print(f"machine: {machine()}")
    workdir = Path(tempfile.mkdtemp(prefix="hemowatch-bench-"))
    port = free_port()
    broker = Mosquitto(port, workdir, settings=BROKER_SETTINGS)
    broker.start()
    postgres = PostgresServer(durable=True)  # PostgreSQL's defaults: fsync and synchronous_commit on
    postgres.start()
    try:
        settings = Settings(
            _env_file=None, mqtt_url=f"mqtt://127.0.0.1:{port}", hemowatch_db=workdir / "hemowatch.db", rule_hold_s=0,
            alert_reopen_s=0,
        )
        stores = {
            "SQLite, synchronous=FULL": settings,
            "SQLite, synchronous=NORMAL": settings.model_copy(update={
                "hemowatch_db": workdir / "normal.db", "sqlite_synchronous": "NORMAL", "mqtt_client_id": "bench-normal",
            }),
            "PostgreSQL": settings.model_copy(update={
                "database_url": SecretStr(postgres.fresh_database()), "mqtt_client_id": "bench-postgresql",
            }),
        }
        for each in stores.values():
            ids = _register(each.database, args.patients)
        rss_before = psutil.Process().memory_info().rss

        # 1. Create the persistent sessions, queue the same messages for each, then time each drain.
        await _bare_subscriber_rate(port, args.messages, connected=False)
        for each in stores.values():
            monitor = VitalsMonitor(each, LatencyNotifier())
            await monitor.start()
            await asyncio.wait_for(monitor.subscriber.subscribed.wait(), 10)
            await monitor.stop()
        base = time.time() - args.messages / 1000
        await _publish(port, [
            (vitals_topic(PREFIX, ids[i % len(ids)]), json.dumps(CALM | {"ts": base + i / 1000, "hr": 60 + i % 30}))
            for i in range(args.messages)
        ])
        bare = await _bare_subscriber_rate(port, args.messages, connected=True)
        print(f"sustained ingest ({args.messages:,} messages, {args.patients:,} patients, validated, scored and stored):")
        for name, each in stores.items():
            monitor = VitalsMonitor(each, LatencyNotifier())
            ingest = await _ingest_rate(monitor, args.messages)
            rss = psutil.Process().memory_info().rss
            await monitor.stop()
            print(f"  {name}: {ingest:,.0f} messages/s ({ingest / bare:.2f} of a bare subscriber), "
                  f"{_bytes_per_sample(each):,.0f} bytes on disk per stored sample with its indexes")
        print(f"  bare aiomqtt subscriber parsing JSON: {bare:,.0f} messages/s")

        # 2. Alert latency under a steady 1,000 messages per second from another process, on a new session each.
        for name in ("SQLite, synchronous=FULL", "PostgreSQL"):
            fresh = stores[name].model_copy(update={"mqtt_client_id": f"latency-{len(name)}"})
            rate, latencies = await _alert_latency(fresh, port, args)
            p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
            print(f"alert latency, {name}, at {rate:,.0f} messages/s: p50 {statistics.median(latencies):.1f} ms, "
                  f"p99 {p99:.1f} ms ({len(latencies)} alerts)")

        # 3. Memory with every patient known and judged at least once (the last drain's monitor).
        print(f"resident memory with {args.patients:,} patients: {rss / 2**20:.0f} MB "
              f"(process before the monitors started: {rss_before / 2**20:.0f} MB)")

        # 4. Retention: every stored sample pruned at once, as the hourly job does with those past RETENTION_DAYS.
        for name in ("SQLite, synchronous=FULL", "PostgreSQL"):
            db = open_database(stores[name].database)
            started = time.perf_counter()
            pruned = prune_vitals(db, time.time() + 3600)
            print(f"retention, {name}: {pruned / (time.perf_counter() - started):,.0f} samples pruned per second "
                  f"({pruned:,} in one delete)")
            db.close()
    finally:
        postgres.stop()
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
