"""The vitals vocabulary: each vital's name and unit, the NEWS2 parameters, one sample, and a patient's own
limits. Every text about a vital reads it from here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Vital:
    """One vital as texts name it."""

    label: str
    unit: str = ""

    @property
    def after_number(self) -> str:
        """The unit as written after a number: `88%`, `120/min`, `140 mmHg`, `36.8 °C`."""
        return self.unit if not self.unit or self.unit[0] in "%/" else f" {self.unit}"

    def reading(self, value: Any) -> str:
        """`120/min`, `36.8 °C`, `A`; a number in its shortest form."""
        number = isinstance(value, int | float) and not isinstance(value, bool)
        return f"{value:g}{self.after_number}" if number else f"{value}{self.after_number}"


VITALS: dict[str, Vital] = {
    "hr": Vital("Heart rate", "/min"),
    "spo2": Vital("SpO2", "%"),
    "sbp": Vital("Systolic pressure", "mmHg"),
    "dbp": Vital("Diastolic pressure", "mmHg"),
    "rr": Vital("Respiratory rate", "/min"),
    "temp": Vital("Temperature", "°C"),
    "gcs": Vital("GCS"),
    "o2": Vital("On oxygen"),
    "acvpu": Vital("Consciousness (ACVPU)"),
}
THRESHOLD_VITALS = ("hr", "spo2", "sbp", "dbp", "rr", "temp")  # the vitals with alert limits
VITAL_FIELDS = tuple(VITALS)

# The NEWS2 parameters by the names its score components carry (Royal College of Physicians chart terms).
NEWS2_PARAMETERS = {
    "rr": "respiration rate", "spo2": "SpO2", "o2": "supplemental oxygen", "sbp": "systolic pressure",
    "hr": "pulse", "consciousness": "consciousness", "temp": "temperature",
}


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
