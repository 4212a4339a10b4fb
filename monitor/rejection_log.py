"""Rejected messages in the log: at most one line per reason per minute, however many arrive.

A flood (a device publishing for a patient who is not registered, thousands of times a minute) would otherwise
write a line per message. The first rejection of a reason after a quiet minute is written at once, with the
message; the rejections of that reason in the next minute are counted, and one line then gives their number
and the latest of them. `write_due` writes a count whose minute is over when no further rejection comes to do it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from monitor.ingest import Message
from monitor.payload import RejectedPayload

log = logging.getLogger(__name__)

EVERY_S = 60.0
LOGGED_CHARS = 80  # of a rejected message's topic, payload or reason: a 64 kB topic makes no 64 kB log line


def clip(value: str | bytes, limit: int = LOGGED_CHARS) -> str:
    """A short prefix of input for a log line, saying how long the whole was when it is cut."""
    head = repr(value[:limit]) if isinstance(value, bytes) else value[:limit]
    unit = "bytes" if isinstance(value, bytes) else "characters"
    return head if len(value) <= limit else f"{head}… ({len(value)} {unit})"


@dataclass
class _Reason:
    count: int = 0  # rejections not yet in the log
    since: float = 0.0  # when the first of them arrived
    latest: tuple[Message, RejectedPayload] | None = None
    quiet_until: float = -math.inf  # no line for this reason before then


class RejectionLog:
    """Counts rejected messages by reason and writes them to the log at WARNING, one line per reason per
    `every_s` (on the messages' arrival times)."""

    def __init__(self, every_s: float = EVERY_S) -> None:
        self._every_s = every_s
        self._reasons: dict[str, _Reason] = {}

    def note(self, message: Message, rejection: RejectedPayload) -> None:
        reason = self._reasons.setdefault(rejection.reason, _Reason())
        if not reason.count:
            reason.since = message.received_at
        reason.count += 1
        reason.latest = (message, rejection)
        self._write(reason, message.received_at)

    def write_due(self, now: float) -> None:
        """Write the counts whose minute is over."""
        for reason in self._reasons.values():
            self._write(reason, now)

    def _write(self, reason: _Reason, now: float) -> None:
        if not reason.count or now < reason.quiet_until:
            return
        message, rejection = reason.latest
        where = f"on {clip(message.topic)}: {clip(str(rejection))} ({rejection.reason}); payload {clip(message.payload)}"
        if reason.count == 1:
            log.warning("rejected message %s", where)
        else:
            log.warning("rejected %d messages in the last %.0f s, the latest %s", reason.count, now - reason.since,
                        where)
        reason.count, reason.latest, reason.quiet_until = 0, None, now + self._every_s
