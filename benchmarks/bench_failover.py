"""Failover benchmark: two `hemowatch run` on one PostgreSQL and one mosquitto, the leader killed with SIGKILL.

    .venv/bin/python -m benchmarks.bench_failover [--rounds 5] [--rate 200] [--patients 50] [--settle-seconds 10]

It starts a PostgreSQL server (Debian's package, durable defaults), mosquitto as deploy/mosquitto.conf sets it
(`max_queued_messages 0`) and the local Bot API server, then two instances. A gateway publishes vitals at QoS 1 at
`--rate` messages per second for `--patients` patients; every half second one of ten probe patients turns alarming
(SpO2 85: an urgent NEWS2 alert at once) or back. In each round the leader is killed with SIGKILL and started again
to stand by, so the rounds alternate which instance leads. Prints the machine, then per round and over the rounds:
- takeover time: from the kill to the first sample stored by the new leader (target: at most 10 s);
- alert latency: from a probe sample's publication to its alert reaching the admin's chat (p50, p99, max) over
  the whole run, failovers included, and how many alerts arrived twice or never;
- samples published, stored and stored twice.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import shutil
import signal
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import aiomqtt

from localbotapi import BotApiServer
from monitor.mqtt import vitals_topic
from store import open_database
from store.database import Database
from store.patients import add_patient
from testsupport.broker import Mosquitto, free_port
from testsupport.machine import machine
from testsupport.postgres import PostgresServer
from testsupport.service_process import RUN, clean_env, read_lines, running_in_session, until_logged

ADMIN = 900
PROBES = 10
CALM = {"hr": 72, "spo2": 97, "sbp": 125, "dbp": 80, "rr": 15, "temp": 36.8, "gcs": 15, "acvpu": "A"}
# As deploy/mosquitto.conf: persistent sessions kept whole, saved to disk every 10 s.
BROKER_SETTINGS = ("persistence true", "autosave_interval 10", "max_queued_messages 0", "sys_interval 1")


@dataclass
class Instance:
    process: asyncio.subprocess.Process
    log: list[str]
    reading: asyncio.Task[None]


@dataclass
class Probes:
    """When each probe patient's alarming samples were published, and when their alerts arrived."""

    published: dict[tuple[str, int], float] = field(default_factory=dict)  # (patient, episode) -> time
    episodes: dict[str, int] = field(default_factory=dict)
    arrived: list[tuple[str, float]] = field(default_factory=list)  # (patient, time) per alert message


async def start_instance(workdir: Path, env: dict[str, str]) -> Instance:
    workdir.mkdir(exist_ok=True)
    process = await asyncio.create_subprocess_exec(*RUN, cwd=workdir, env=clean_env(workdir, **env),
                                                   stderr=asyncio.subprocess.PIPE, start_new_session=True)
    log: list[str] = []
    return Instance(process, log, asyncio.create_task(read_lines(process.stderr, log)))


async def end_instance(instance: Instance) -> None:
    for left in running_in_session(instance.process.pid):
        left.kill()
    await instance.process.wait()
    await instance.reading


async def gateway(port: int, patients: list[str], rate: int, probes: Probes, stop: asyncio.Event) -> int:
    """Publish until `stop`; returns how many messages were published (each acknowledged by the broker)."""
    sent, started = 0, time.monotonic()
    async with aiomqtt.Client("127.0.0.1", port, identifier="ward-gateway") as client:
        while not stop.is_set():
            patient = patients[PROBES + sent % (len(patients) - PROBES)]
            vitals = CALM
            if sent % (rate // 2) == 0:  # twice a second, a probe patient turns alarming or back
                turn = sent // (rate // 2)
                patient = patients[turn % PROBES]
                episode = probes.episodes.get(patient, 0) + 1
                probes.episodes[patient] = episode
                if episode % 2:
                    vitals = CALM | {"spo2": 85}
                    probes.published[(patient, episode)] = time.time()
            await client.publish(vitals_topic("hemowatch", patient), json.dumps(vitals | {"ts": time.time()}), qos=1)
            sent += 1
            await asyncio.sleep(max(0.0, started + sent / rate - time.monotonic()))
    return sent


async def collect_alerts(api: BotApiServer, probes: Probes) -> None:
    """Note when each NEWS2 alert reaches the admin's chat (only its text says "Points from"; it names the patient)."""
    seen = 0
    while True:
        conversation = api.conversation(ADMIN)
        now = time.time()
        for message in conversation[seen:]:
            text = message.get("text", "")
            if "Points from" in text:
                patient = next((p for p in probes.episodes if f"({p})" in text), None)
                if patient is not None:
                    probes.arrived.append((patient, now))
        seen = len(conversation)
        await asyncio.sleep(0.01)


def latencies(probes: Probes) -> tuple[list[float], int, int]:
    """Alert latencies in ms (each alarming episode matched to the first alert after it), alerts missing, extra."""
    found, missing, by_patient = [], 0, {}
    for patient, at in probes.arrived:
        by_patient.setdefault(patient, []).append(at)
    extra = 0
    for patient, arrivals in by_patient.items():
        episodes = sorted(t for (p, _), t in probes.published.items() if p == patient)
        for index, published in enumerate(episodes):
            following = episodes[index + 1] if index + 1 < len(episodes) else float("inf")
            matched = [at for at in arrivals if published <= at < following]
            if matched:
                found.append((matched[0] - published) * 1000)
                extra += len(matched) - 1
            else:
                missing += 1
    return sorted(found), missing, extra


async def first_stored_after(db: Database, killed_at: float, dead_at: float, timeout: float = 60) -> float:
    """Seconds from the kill until a sample received after the killed leader was gone is stored (received by the
    new leader: the old one may still store a batch in the moment between the signal and its end)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if db.execute("select 1 from vitals where received_at > ? limit 1", [dead_at]).fetchone():
            return time.time() - killed_at
        await asyncio.sleep(0.02)
    raise TimeoutError("no sample stored after the kill")


def logged_at(log: list[str], text: str) -> float:
    """When the first log line containing `text` was written (the log's local time stamps, to the millisecond)."""
    line = next(line for line in log if text in line)
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()


@asynccontextmanager
async def surroundings(workdir: Path) -> AsyncIterator[tuple[Mosquitto, PostgresServer, BotApiServer]]:
    broker = Mosquitto(free_port(), workdir, settings=BROKER_SETTINGS)
    broker.start()
    postgres = PostgresServer(durable=True)
    postgres.start()
    try:
        async with BotApiServer() as api:
            yield broker, postgres, api
    finally:
        postgres.stop()
        broker.stop()


async def main(args: argparse.Namespace) -> None:
    print(f"machine: {machine()}")
    workdir = Path(tempfile.mkdtemp(prefix="hemowatch-failover-"))
    try:
        async with surroundings(workdir) as (broker, postgres, api), AsyncExitStack() as stack:
            url = postgres.fresh_database()
            db = open_database(url)
            patients = [f"bed-{number:03d}" for number in range(args.patients)]
            for patient_id in patients:
                add_patient(db, patient_id, patient_id, time.time())
            api.introduce(ADMIN, "Ada")
            env = {"TELEGRAM_BOT_TOKEN": api.token, "TELEGRAM_API_URL": api.url, "DATABASE_URL": url,
                   "MQTT_URL": broker.url, "ADMIN_USER_IDS": str(ADMIN), "RULE_HOLD_S": "0", "ALERT_REOPEN_S": "0",
                   "DICOM_PORT": "0"}
            instances = [await start_instance(workdir / "a", env)]
            await until_logged(instances[0].log, "HemoWatch is running as @")
            instances.append(await start_instance(workdir / "b", env))
            await until_logged(instances[1].log, "standing by")
            for instance in instances:
                stack.push_async_callback(lambda i=instance: end_instance(i))

            probes, stop = Probes(), asyncio.Event()
            collecting = asyncio.create_task(collect_alerts(api, probes))
            publishing = asyncio.create_task(gateway(broker.port, patients, args.rate, probes, stop))
            takeovers = []
            for round_number in range(1, args.rounds + 1):
                # The kill lands anywhere in the standby's half-second between tries of the lease.
                await asyncio.sleep(args.settle_seconds + random.uniform(0, 0.5))
                leader, standby = instances
                leader.process.send_signal(signal.SIGKILL)
                killed_at = time.time()
                await end_instance(leader)
                takeover_s = await first_stored_after(db, killed_at, time.time())
                takeovers.append(takeover_s)
                await until_logged(standby.log, "HemoWatch is running as @")
                leased_s = logged_at(standby.log, "holds the leadership lease") - killed_at
                print(f"round {round_number}: takeover {takeover_s:.2f} s (kill to the first sample stored by the "
                      f"new leader; the lease was its {leased_s:.2f} s after the kill)")
                restarted = await start_instance(workdir / f"r{round_number}", env)
                stack.push_async_callback(lambda i=restarted: end_instance(i))
                await until_logged(restarted.log, "standing by")
                instances = [standby, restarted]
            await asyncio.sleep(args.settle_seconds)
            stop.set()
            published = await publishing
            await asyncio.sleep(5)  # the last alerts and samples
            collecting.cancel()

            stored = db.execute("select count(*) from vitals").fetchone()[0]
            alerts, missing, extra = latencies(probes)
            p99 = alerts[min(len(alerts) - 1, int(len(alerts) * 0.99))]
            print(f"takeover over {args.rounds} rounds: median {statistics.median(takeovers):.2f} s, "
                  f"max {max(takeovers):.2f} s (target 10 s)")
            print(f"alert latency, publication to the admin's chat, failovers included: p50 "
                  f"{statistics.median(alerts):.0f} ms, p99 {p99:.0f} ms, max {alerts[-1]:.0f} ms "
                  f"({len(alerts)} alerts; {missing} never arrived, {extra} arrived twice)")
            print(f"samples: {published:,} published at {args.rate}/s, {stored:,} stored "
                  f"({stored - published:+,} against published)")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rate", type=int, default=200, help="messages per second")
    parser.add_argument("--patients", type=int, default=50)
    parser.add_argument("--settle-seconds", type=float, default=10.0, help="before each kill, and after the last")
    asyncio.run(main(parser.parse_args()))
