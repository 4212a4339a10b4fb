"""Simulated bedside devices: realistic, slowly varying vitals for N patients, published over MQTT.

Scenarios (each happens to every simulated patient, from the start):
- `stable`: normal adult vitals with small natural variation.
- `hypoxia`: SpO2 falls about a point every 2 s towards 82 %, breathing and pulse speed up.
- `hypertension`: systolic pressure climbs towards 185 mmHg within about 20 s.
- `deterioration`: Cushing's triad after a bleed grows: GCS drops (13 at 20 s, 11 at 40 s), systolic
  pressure rises, pulse and breathing slow.
- `offline`: stable, then every sensor stops after 20 s ("sensor offline" after STALE_AFTER_S).
With the default rule hold (30 s) each scenario raises its alerts within a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Callable

import aiomqtt

from core.backoff import Backoff
from monitor.mqtt import vitals_topic

log = logging.getLogger(__name__)

OFFLINE_AFTER_S = 20.0
BASELINE = {"hr": 76.0, "spo2": 97.0, "sbp": 124.0, "dbp": 78.0, "rr": 15.0, "temp": 36.8}
NOISE = {"hr": 1.2, "spo2": 0.3, "sbp": 1.5, "dbp": 1.0, "rr": 0.4, "temp": 0.02}  # per-sample wobble
PULL = 0.2  # how fast a value follows its target (per sample)


def _hypoxia(t: float) -> dict[str, float]:
    return {"spo2": -min(15.0, t / 2), "rr": min(10.0, t / 6), "hr": min(25.0, t / 2)}


def _hypertension(t: float) -> dict[str, float]:
    return {"sbp": min(60.0, 3 * t), "dbp": min(25.0, 1.2 * t)}


def _deterioration(t: float) -> dict[str, float]:
    return {"gcs": -min(6.0, t // 10), "sbp": min(60.0, 2 * t), "hr": -min(30.0, t), "rr": -min(6.0, t / 5)}


SCENARIOS: dict[str, Callable[[float], dict[str, float]]] = {
    "stable": lambda t: {},
    "hypoxia": _hypoxia,
    "hypertension": _hypertension,
    "deterioration": _deterioration,
    "offline": lambda t: {},
}


def _acvpu(gcs: int) -> str:
    if gcs == 15:
        return "A"
    if gcs >= 13:
        return "C"
    return "V" if gcs >= 9 else "P"


class SimulatedPatient:
    """One bedside device: each reading drifts towards the scenario's target with some noise."""

    def __init__(self, patient_id: str, scenario: str, rng: random.Random) -> None:
        self.patient_id = patient_id
        self._scenario = scenario
        self._trend = SCENARIOS[scenario]
        self._rng = rng
        self._values = dict(BASELINE)

    def reading(self, elapsed_s: float, now: float) -> dict[str, object] | None:
        """The payload at `elapsed_s` into the scenario, stamped `now`; None once the sensor is offline."""
        if self._scenario == "offline" and elapsed_s >= OFFLINE_AFTER_S:
            return None
        trend = self._trend(elapsed_s)
        for name, value in self._values.items():
            target = BASELINE[name] + trend.get(name, 0.0)
            self._values[name] = value + PULL * (target - value) + self._rng.gauss(0, NOISE[name])
        gcs = int(15 + trend.get("gcs", 0))
        v = self._values
        return {
            "ts": round(now, 3), "hr": round(v["hr"]), "spo2": min(100, round(v["spo2"])), "sbp": round(v["sbp"]),
            "dbp": round(min(v["dbp"], v["sbp"] - 20)), "rr": max(4, round(v["rr"])), "temp": round(v["temp"], 1),
            "gcs": gcs, "o2": False, "acvpu": _acvpu(gcs),
        }


async def simulate(
    client_kwargs: dict[str, object],
    patients: list[SimulatedPatient],
    rate_hz: float,
    topic_prefix: str,
    stop: asyncio.Event,
    duration_s: float | None = None,
) -> int:
    """Publish every patient's reading `rate_hz` times a second until `stop` or `duration_s` (which bounds the
    waits for an unreachable broker too); returns how many messages the broker accepted."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    published, tick, backoff = 0, 0, Backoff()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(duration_s):
            while not stop.is_set():
                try:
                    async with aiomqtt.Client(**client_kwargs) as client:
                        backoff.reset()
                        while not stop.is_set():
                            elapsed = loop.time() - started
                            readings = [(p.patient_id, p.reading(elapsed, time.time())) for p in patients]
                            await asyncio.gather(*(
                                client.publish(vitals_topic(topic_prefix, patient_id), json.dumps(reading), qos=1)
                                for patient_id, reading in readings if reading is not None
                            ))
                            published += sum(reading is not None for _, reading in readings)
                            tick += 1
                            next_at = started + tick / rate_hz
                            with contextlib.suppress(TimeoutError):
                                await asyncio.wait_for(stop.wait(), max(0.0, next_at - loop.time()))
                except aiomqtt.MqttError as error:
                    delay = backoff.next_delay()
                    log.warning("broker unreachable (%s); retrying in %.1f s", error, delay)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), delay)
    return published
