"""What the bot counts for the service's metrics: the Bot API calls that failed, by kind, and its scan analyses.

Every call to the Bot API goes through `CountingRequest`, python-telegram-bot's own HTTP client with a count of
failures added, so a failure is counted once wherever it happens (polling, a reply, an alert, a retry).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from telegram.error import TelegramError
from telegram.request import HTTPXRequest

from core.durations import Durations


TELEGRAM_ERROR_KINDS = ("network", "rate_limited", "server", "refused")


@dataclass
class BotStats:
    telegram_errors: Counter[str] = field(default_factory=Counter)  # by kind, one of TELEGRAM_ERROR_KINDS
    scans: Durations = field(default_factory=Durations)  # analyses of uploaded scans, failed ones included


class CountingRequest(HTTPXRequest):
    """HTTPXRequest that counts each failed call in `errors` by kind: no answer (network), a rate limit (429), a
    server error (5xx) or a refusal (any other 4xx)."""

    def __init__(self, errors: Counter[str], **options: Any) -> None:
        super().__init__(**options)
        self._errors = errors

    async def do_request(self, *args: Any, **kwargs: Any) -> tuple[int, bytes]:
        try:
            status, payload = await super().do_request(*args, **kwargs)
        except TelegramError:  # no answer: timeouts and connection errors
            self._errors["network"] += 1
            raise
        if status >= 400:
            self._errors["rate_limited" if status == 429 else "server" if status >= 500 else "refused"] += 1
        return status, payload
