"""`hemowatch simulate`: register simulated patients and publish their vitals until the duration or a signal."""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from pathlib import Path

from core.settings import Settings
from hemowatch.signals import stop_on_signals
from monitor.mqtt import broker_url, client_options
from monitor.simulator import SimulatedPatient, simulate
from store.patients import add_patient, get_patient
from store import open_database


def register_patients(database: Path | str, patient_ids: list[str], now: float) -> None:
    """Register simulated patients the monitor does not know yet (it rejects unknown patients)."""
    db = open_database(database)
    try:
        for number, patient_id in enumerate(patient_ids, start=1):
            if get_patient(db, patient_id) is None:
                add_patient(db, patient_id, f"Simulated patient {number}", now)
    finally:
        db.close()


def run_simulator(args: argparse.Namespace, settings: Settings) -> int:
    """Entry point of `hemowatch simulate`."""
    url = args.broker or broker_url(settings.mqtt_url, settings.embedded_broker_host, settings.embedded_broker_port)
    ids = [f"{args.prefix}{number}" for number in range(1, args.patients + 1)]
    register_patients(settings.database, ids, time.time())
    rng = random.Random()
    patients = [SimulatedPatient(patient_id, args.scenario, rng) for patient_id in ids]

    async def until_signalled() -> int:
        return await simulate(options, patients, args.rate, settings.mqtt_topic_prefix, stop_on_signals(),
                              args.duration)

    options = client_options(url, settings.mqtt_ca_file)
    print(f"publishing '{args.scenario}' vitals for {len(ids)} patient{'s' * (len(ids) != 1)} ({', '.join(ids[:3])}"
          f"{', ...' if len(ids) > 3 else ''}) at {args.rate:g} Hz to {options['hostname']}:{options['port']};"
          " Ctrl+C stops")
    published = asyncio.run(until_signalled())
    print(f"published {published} sample{'s' * (published != 1)}")
    return 0
