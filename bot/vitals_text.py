"""How vital signs, NEWS2 scores and ages are written in messages (names and units from `core.vitals`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.vitals import NEWS2_PARAMETERS, VITALS


def vital(name: str, value: Any) -> str:
    """`Heart rate 128/min`, `On oxygen: yes`."""
    if name == "o2":
        return f"{VITALS[name].label}: {'yes' if value else 'no'}"
    return f"{VITALS[name].label} {VITALS[name].reading(value)}"


def vitals_line(values: Mapping[str, Any]) -> str:
    """`Heart rate 128/min · SpO2 88%`, in the order of `core.vitals.VITALS`, skipping missing values."""
    return " · ".join(vital(name, values[name]) for name in VITALS if values.get(name) is not None)


def news2(score: int, components: Mapping[str, int]) -> str:
    """`NEWS2 7 (respiration rate 3, SpO2 2, pulse 2)`: only the parameters that scored."""
    parts = news2_parts(components)
    return f"NEWS2 {score}" + (f" ({parts})" if parts else "")


def news2_parts(components: Mapping[str, int]) -> str:
    """`respiration rate 3, SpO2 2, pulse 2`: the parameters of a NEWS2 that scored."""
    return ", ".join(f"{NEWS2_PARAMETERS.get(k, k)} {v}" for k, v in components.items() if v)


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
    shown = VITALS[name]
    low_text = "standard" if low is None else f"{low:g}"
    high_text = "standard" if high is None else f"{high:g}"
    return f"{shown.label}: {low_text} to {high_text}{shown.after_number}"
