"""How vital signs, NEWS2 scores and ages are written in messages."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# name in the store -> (label, unit as written after the number)
VITALS: dict[str, tuple[str, str]] = {
    "hr": ("Heart rate", " /min"),
    "spo2": ("SpO2", "%"),
    "sbp": ("Systolic pressure", " mmHg"),
    "dbp": ("Diastolic pressure", " mmHg"),
    "rr": ("Respiratory rate", " /min"),
    "temp": ("Temperature", " °C"),
    "gcs": ("GCS", ""),
    "o2": ("On oxygen", ""),
    "acvpu": ("Consciousness (ACVPU)", ""),
}

NEWS2_PARTS = {
    "rr": "breathing", "spo2": "SpO2", "o2": "oxygen", "sbp": "BP", "hr": "pulse",
    "acvpu": "consciousness", "temp": "temperature",
}


def vital(name: str, value: Any) -> str:
    label, unit = VITALS.get(name, (name, ""))
    if name == "o2":
        return f"{label}: {'yes' if value else 'no'}"
    if isinstance(value, float):
        value = f"{value:g}"
    return f"{label} {value}{unit}"


def vitals_line(values: Mapping[str, Any]) -> str:
    """`Heart rate 128 /min · SpO2 88%`, in the order of VITALS, skipping missing values."""
    return " · ".join(vital(name, values[name]) for name in VITALS if values.get(name) is not None)


def news2(score: int, components: Mapping[str, int]) -> str:
    """`NEWS2 7 (breathing 3, SpO2 2, pulse 2)`: only the parts that scored."""
    parts = news2_parts(components)
    return f"NEWS2 {score}" + (f" ({parts})" if parts else "")


def news2_parts(components: Mapping[str, int]) -> str:
    """`breathing 3, SpO2 2, pulse 2`: the parts of a NEWS2 that scored."""
    return ", ".join(f"{NEWS2_PARTS.get(k, k)} {v}" for k, v in components.items() if v)


def age(seconds: float) -> str:
    """`just now`, `4 min ago`, `2 h 5 min ago`."""
    minutes = int(max(seconds, 0) // 60)
    if minutes < 1:
        return "just now"
    if minutes < 60:
        return f"{minutes} min ago"
    return f"{minutes // 60} h {minutes % 60} min ago"


def limit(name: str, low: float | None, high: float | None) -> str:
    """`SpO2: 92 to 100%`, with `standard` for a side that keeps the default."""
    label, unit = VITALS.get(name, (name, ""))
    low_text = "standard" if low is None else f"{low:g}"
    high_text = "standard" if high is None else f"{high:g}"
    return f"{label}: {low_text} to {high_text}{unit}"
