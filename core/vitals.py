"""The vitals vocabulary: the vitals a device reports, their units, one sample, and a patient's own limits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Vitals with numeric alert thresholds, and their units (for texts).
VITAL_UNITS: dict[str, str] = {
    "hr": "/min", "spo2": "%", "sbp": "mmHg", "dbp": "mmHg", "rr": "/min", "temp": "°C",
}
THRESHOLD_VITALS = tuple(VITAL_UNITS)
VITAL_FIELDS = (*THRESHOLD_VITALS, "gcs", "o2", "acvpu")


@dataclass(slots=True)
class VitalSample:
    """One set of measurements from a patient's device; any vital may be missing."""

    patient_id: str
    ts: float  # when measured (epoch seconds)
    received_at: float  # when the monitor got it
    hr: float | None = None  # beats/min
    spo2: float | None = None  # %
    sbp: float | None = None  # mmHg
    dbp: float | None = None  # mmHg
    rr: float | None = None  # breaths/min
    temp: float | None = None  # °C
    gcs: int | None = None  # 3-15
    o2: bool | None = None  # on supplemental oxygen
    acvpu: str | None = None  # A, C, V, P or U
    news2: int | None = None  # when the sample completed a set of vitals
    news2_components: dict[str, int] | None = None
    device: str = ""  # which of the patient's devices measured it ("" when the device does not say)
    device_ts: float | None = None  # the device's own stamp when its clock was judged wrong (`ts` is then arrival)

    @property
    def stamp(self) -> float:
        """The time the device put on the sample, which a resend repeats."""
        return self.ts if self.device_ts is None else self.device_ts

    def values(self) -> dict[str, Any]:
        """The vitals present in this sample, by name."""
        return {name: value for name in VITAL_FIELDS if (value := getattr(self, name)) is not None}


@dataclass(frozen=True, slots=True)
class Threshold:
    """A patient's own limits for one vital; None keeps the default for that side."""

    vital: str
    low: float | None
    high: float | None
