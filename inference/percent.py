"""How a probability or threshold is shown to people: one format everywhere (the chat, the alerts, the heat-map's
caption, the command-line table, the capture sent back to PACS), so the same study never reads as two numbers.
Machine output (`classify --json`) keeps numbers, rounded to `DECIMALS` places."""

from __future__ import annotations

import math

DECIMALS = 4


def percent(probability: float) -> str:
    """A whole percent, halves rounded up ("19%"); what would round to 0% or 100% is "under 1%" or "over 99%",
    since the model is never certain."""
    whole = math.floor(probability * 100 + 0.5)
    if whole < 1:
        return "under 1%"
    if whole > 99:
        return "over 99%"
    return f"{whole}%"
