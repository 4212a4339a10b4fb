"""The demo patient's bedside device: stable vitals from the start, a scenario of `monitor.simulator` on demand."""

from __future__ import annotations

import asyncio
import random
from contextlib import suppress

from core.settings import Settings
from monitor.mqtt import broker_url, client_options
from monitor.simulator import SCENARIOS, SimulatedPatient, simulate

RATE_HZ = 1.0


class BedsideDevice:
    """Publishes one patient's vitals to the service's broker; `switch` starts a scenario from its beginning."""

    def __init__(self, settings: Settings, patient_id: str) -> None:
        url = broker_url(settings.mqtt_url, settings.embedded_broker_host, settings.embedded_broker_port)
        self._options = client_options(url, settings.mqtt_ca_file)
        self._prefix = settings.mqtt_topic_prefix
        self._patient_id = patient_id
        self._rng = random.Random()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[int] | None = None
        self.scenario = ""

    async def switch(self, scenario: str) -> None:
        """Stop the current scenario and start `scenario` (one of `monitor.simulator.SCENARIOS`)."""
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r}")
        await self.stop()
        self._stop = asyncio.Event()
        patient = SimulatedPatient(self._patient_id, scenario, self._rng)
        self._task = asyncio.create_task(simulate(self._options, [patient], RATE_HZ, self._prefix, self._stop))
        self.scenario = scenario

    async def stop(self) -> None:
        if self._task is not None:
            self._stop.set()
            with suppress(asyncio.CancelledError):
                await self._task
            self._task = None
