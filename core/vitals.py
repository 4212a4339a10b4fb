"""The vitals vocabulary: each vital's name, unit and possible range, the standard alert limits, the NEWS2
parameters, one sample, and a patient's own limits. Every text and check about a vital reads it from here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Vital:
    """One vital as texts name it and checks bound it."""

    label: str
    unit: str = ""
    lowest: float | None = None  # a living patient's readings lie from `lowest` to `highest`; beyond: a device fault
    highest: float | None = None
    standard: tuple[float | None, float | None] = (None, None)  # adult alert limits (low, high); None: not watched

    @property
    def after_number(self) -> str:
        """The unit as written after a number: `88%`, `120/min`, `140 mmHg`, `36.8 °C`."""
        return self.unit if not self.unit or self.unit[0] in "%/" else f" {self.unit}"

    def reading(self, value: Any) -> str:
        """`120/min`, `36.8 °C`, `A`; a number in its shortest form."""
        number = isinstance(value, int | float) and not isinstance(value, bool)
        return f"{value:g}{self.after_number}" if number else f"{value}{self.after_number}"

    @property
    def possible(self) -> str:
        """`20 to 300/min`."""
        return f"{self.lowest:g} to {self.reading(self.highest)}"


# The standard limits sit roughly where NEWS2 scores a parameter 3; a patient's own limits override them.
VITALS: dict[str, Vital] = {
    "hr": Vital("Heart rate", "/min", 20, 300, (40, 130)),
    "spo2": Vital("SpO2", "%", 40, 100, (90, None)),
    "sbp": Vital("Systolic pressure", "mmHg", 40, 300, (90, 200)),
    "dbp": Vital("Diastolic pressure", "mmHg", 15, 200, (40, 120)),
    "rr": Vital("Respiratory rate", "/min", 0, 80, (8, 24)),
    "temp": Vital("Temperature", "°C", 25, 45, (35.0, 39.0)),
    "gcs": Vital("GCS", "", 3, 15),
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
    """A patient's own limits for one vital; None keeps the standard limit for that side."""

    vital: str
    low: float | None
    high: float | None


class LimitError(ValueError):
    """Alert limits a patient cannot have; the message says what is allowed."""


def check_limits(vital: str, low: float | None, high: float | None) -> None:
    """Raise LimitError unless each limit given lies in the vital's possible range and the low limit lies below
    the high one, a side left out (None) counting with its standard limit: a limit beyond what a patient can
    show would never alert, and a low limit above the high one would alert on every reading."""
    if vital not in THRESHOLD_VITALS:
        raise LimitError(f"There are no alert limits for {vital!r}; the vitals are {', '.join(THRESHOLD_VITALS)}.")
    shown = VITALS[vital]
    for limit in (low, high):
        if limit is not None and not shown.lowest <= limit <= shown.highest:  # NaN is refused too
            raise LimitError(f"{shown.label} limits must be from {shown.possible}; {limit:g} is not.")
    standard_low, standard_high = shown.standard
    low_limit = standard_low if low is None else low
    high_limit = standard_high if high is None else high
    if low_limit is not None and high_limit is not None and low_limit >= high_limit:
        raise LimitError(
            f"{shown.label}: the low limit ({_limit(low_limit, low is None)}) must be below the high one "
            f"({_limit(high_limit, high is None)})."
        )


def _limit(value: float, standard: bool) -> str:
    return f"{value:g}, the standard one" if standard else f"{value:g}"
