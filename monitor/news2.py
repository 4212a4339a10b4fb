"""National Early Warning Score 2 (Royal College of Physicians, 2017), SpO2 scale 1.

Pure scoring from one set of observations. Values are rounded as charted (whole numbers; temperature to
one decimal) before banding, so a reading of 90.6 beats/min scores like 91.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.notifications import Severity

# (upper bound inclusive, score) bands, lowest first; the last band has no upper bound.
_RR = ((8, 3), (11, 1), (20, 0), (24, 2), (None, 3))
_SPO2_SCALE_1 = ((91, 3), (93, 2), (95, 1), (None, 0))
_SBP = ((90, 3), (100, 2), (110, 1), (219, 0), (None, 3))
_PULSE = ((40, 3), (50, 1), (90, 0), (110, 1), (130, 2), (None, 3))
_TEMP = ((35.0, 3), (36.0, 1), (38.0, 0), (39.0, 1), (None, 2))
_SUPPLEMENTAL_O2 = 2
_NEW_CONFUSION_OR_WORSE = 3


@dataclass(frozen=True, slots=True)
class News2:
    total: int
    components: dict[str, int]  # by the names of `core.vitals.NEWS2_PARAMETERS`

    @property
    def risk(self) -> Severity | None:
        """Alert level: emergency from 7, urgent from 5 or any single parameter scoring 3, else none."""
        if self.total >= 7:
            return Severity.EMERGENCY
        if self.total >= 5 or max(self.components.values()) == 3:
            return Severity.URGENT
        return None


def _band(value: float, bands: tuple[tuple[float | None, int], ...]) -> int:
    for upper, score in bands:
        if upper is None or value <= upper:
            return score
    raise AssertionError("the last band is open-ended")


def consciousness(acvpu: str | None, gcs: int | None) -> str | None:
    """ACVPU level, taken from ACVPU when charted, else from GCS (15 is Alert, anything lower counts as
    new confusion); None when neither is known."""
    if acvpu is not None:
        return acvpu
    if gcs is not None:
        return "A" if gcs == 15 else "C"
    return None


def news2_score(
    *, rr: float, spo2: float, on_oxygen: bool, sbp: float, hr: float, acvpu: str, temp: float
) -> News2:
    """Score one complete set of observations."""
    components = {
        "rr": _band(round(rr), _RR),
        "spo2": _band(round(spo2), _SPO2_SCALE_1),
        "o2": _SUPPLEMENTAL_O2 if on_oxygen else 0,
        "sbp": _band(round(sbp), _SBP),
        "hr": _band(round(hr), _PULSE),
        "consciousness": 0 if acvpu == "A" else _NEW_CONFUSION_OR_WORSE,
        "temp": _band(round(temp, 1), _TEMP),
    }
    return News2(sum(components.values()), components)
