"""The one way a probability is shown to people."""

from __future__ import annotations

import pytest

from inference.percent import percent


@pytest.mark.parametrize(
    ("probability", "shown"),
    [(0.0, "under 1%"), (0.0049, "under 1%"), (0.005, "1%"), (0.19496, "19%"), (0.236886, "24%"), (0.7679, "77%"),
     (0.9949, "99%"), (0.995, "over 99%"), (1.0, "over 99%")],
)
def test_a_whole_percent_never_claiming_certainty(probability: float, shown: str) -> None:
    assert percent(probability) == shown
