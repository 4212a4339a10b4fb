"""What travels over the wire: JSON objects, error answers (`ApiError`) and the calls the bot made (`ApiCall`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

JSON = dict[str, Any]


class ApiError(Exception):
    """An error answer: HTTP status, Telegram's description and optional retry_after."""

    def __init__(self, status: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.retry_after = retry_after


@dataclass
class ApiCall:
    """One request the bot made, as received (`at` is `time.perf_counter()`)."""

    method: str
    params: JSON
    status: int
    at: float
