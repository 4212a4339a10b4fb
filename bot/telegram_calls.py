"""Bot API calls that must not end the service: retried while Telegram fails, with one log line per failure.

Network errors, timeouts and server errors (5xx) are retried with growing pauses, a rate limit (429) after
the pause Telegram asks for; any other refusal (a 400, say) is logged and not tried again. Only a refused token
is raised: nothing else Telegram does stops the service.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections.abc import Awaitable, Callable
from datetime import timedelta

from telegram.error import BadRequest, InvalidToken, NetworkError, RetryAfter, TelegramError
from telegram.warnings import PTBDeprecationWarning

from core.backoff import Backoff

log = logging.getLogger(__name__)

FIRST_PAUSE_S = 1.0
MAX_PAUSE_S = 60.0


async def keep_trying(
    what: str,
    call: Callable[[], Awaitable[object]],
    *,
    first_s: float = FIRST_PAUSE_S,
    max_s: float = MAX_PAUSE_S,
    meanwhile: str = "",
) -> bool:
    """Run `call` until Telegram accepts it; True once it did, False when Telegram refused it for good.

    `what` names the call in the log ("the command menu (setMyCommands)"); `meanwhile` says what goes on while
    it waits ("vitals are still stored"). InvalidToken is raised to the caller.
    """
    backoff = Backoff(first_s, max_s, jitter=False)
    while True:
        try:
            await call()
        except InvalidToken:
            raise
        except TelegramError as error:
            if not is_passing(error):  # a refusal that retrying will not change (a 400, say)
                log.warning("Telegram refused %s (%s); going on without it", what, error)
                return False
            pause_s = backoff.next_delay()  # a rate limit counts as a failure too, but waits as Telegram asks
            if isinstance(error, RetryAfter):
                pause_s = retry_after_s(error)
                reason = f"rate limited for {pause_s:.0f} s"
            else:  # timeouts, connection errors and 5xx answers
                reason = str(error)
        else:
            if failures := backoff.failures:
                log.info("Telegram accepted %s after %d failed attempt%s", what, failures, "s" * (failures > 1))
            return True
        note = f"; {meanwhile}" if meanwhile else ""
        log.warning("Telegram failed %s (%s); trying again in %.0f s%s", what, reason, pause_s, note)
        await asyncio.sleep(pause_s)


def log_polling_error(error: TelegramError) -> None:
    """python-telegram-bot's polling loop retries getUpdates with growing pauses; say so in one line."""
    log.warning("Telegram failed getUpdates (%s); polling again shortly", error)


def is_passing(error: BaseException | None) -> bool:
    """A failure of Telegram itself (network, server error, rate limit) rather than of our own code.

    A 400 is a refusal of what we sent, so not one, although python-telegram-bot makes BadRequest a
    NetworkError."""
    return isinstance(error, NetworkError | RetryAfter) and not isinstance(error, BadRequest)


def retry_after_s(error: RetryAfter) -> float:
    """The pause a 429 asks for, in seconds (an int or a timedelta, depending on python-telegram-bot's
    PTB_TIMEDELTA switch; either is fine here, so its deprecation notice is not passed on)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        retry_after = error.retry_after
    return retry_after.total_seconds() if isinstance(retry_after, timedelta) else float(retry_after)
